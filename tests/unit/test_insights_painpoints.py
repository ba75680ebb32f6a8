"""Pain points on a small labelled sample, the CSV loader and the report command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from insights.cli import insights
from insights.exceptions import DataFileError
from insights.painpoints import ReviewCorpus
from insights.sources import corpus_from_csv, load_review_csv

NEGATIVE = [
    "电池不耐用，一天要充三次电",
    "电池不耐用，待机时间太短",
    "用了一周就死机，电池也不耐用",
    "经常死机重启，很失望",
    "屏幕有坏点，电池不耐用",
    "信号很差，经常死机",
    "电池不耐用，颜色还可以",
    "死机好几次了，手机外观还行",
]
POSITIVE = [
    "手机外观漂亮，颜色很正",
    "颜色好看，手机运行流畅",
    "外观时尚，屏幕清晰",
    "手机很好，颜色也喜欢，电池还可以",
    "运行流畅，外观漂亮",
    "颜色正，屏幕清晰，物流很快",
    "手机不错，外观大气",
    "外观很好，颜色漂亮",
]


def _sample_corpus() -> ReviewCorpus:
    corpus = ReviewCorpus()
    for text in NEGATIVE:
        corpus.add("手机", text, negative=True)
    for text in POSITIVE:
        corpus.add("手机", text, negative=False)
    return corpus


def test_clearly_negative_aspects_outrank_neutral_words() -> None:
    corpus = _sample_corpus()
    points = corpus.pain_points("手机", top=5, min_negative=2, min_z=0)
    aspects = [p.aspect for p in points]
    assert aspects[:2] == ["电池", "死机"] or aspects[:2] == ["死机", "电池"]
    for neutral in ("手机", "颜色", "外观"):
        assert neutral not in aspects
    battery = next(p for p in points if p.aspect == "电池")
    assert battery.phrase == "不耐用"
    assert len(battery.examples) == 2 and all("电池" in e for e in battery.examples)
    # Examples are the clause that names the aspect, not the whole review.
    assert all("，" not in e for e in battery.examples), battery.examples
    assert "电池" in battery.suggestion and "不耐用" in battery.suggestion


def test_brands_own_name_and_even_words_are_never_pain_points() -> None:
    corpus = ReviewCorpus()
    for i in range(30):
        corpus.add("蒙牛", f"蒙牛牛奶有异味第{i}次，伊利也一样，包装漏了", negative=True)
        corpus.add("蒙牛", f"口感不错，包装也好，送货快{i}", negative=False)
    aspects = [p.aspect for p in corpus.pain_points("蒙牛", top=10, min_negative=2, min_z=0)]
    assert "异味" in aspects
    for word in ("蒙牛", "伊利", "牛奶", "蒙牛牛奶", "包装"):  # brand, own name, as common in both
        assert word not in aspects, aspects


def test_significance_threshold_drops_weak_aspects() -> None:
    corpus = _sample_corpus()
    assert corpus.pain_points("手机", top=5, min_negative=2, min_z=50.0) == []


def test_rising_complaints_come_first_when_reviews_carry_time() -> None:
    corpus = ReviewCorpus(bucket_ms=1000)
    for day in range(6):
        for i in range(6):
            late = day >= 4  # 屏幕 complaints start in the last third of the days
            corpus.add(
                "手机",
                f"屏幕有坏点{day}{i}，很失望" if late and i < 4 else f"电池不耐用{day}{i}，很失望",
                True,
                ts_ms=day * 1000 + i,
            )
            corpus.add("手机", "外观漂亮，运行流畅", False, ts_ms=day * 1000 + i)
    points = corpus.pain_points("手机", top=3, min_negative=2, min_z=0)
    assert points[0].aspect in {"屏幕", "坏点"} and points[0].trend is not None and points[0].trend.rising
    battery = next(p for p in points if p.aspect == "电池")
    assert battery.trend is not None and not battery.trend.rising


def test_no_pain_points_without_both_labels() -> None:
    corpus = ReviewCorpus()
    corpus.add("热水器", "漏水严重", negative=True)
    assert corpus.pain_points("热水器") == []
    assert corpus.pain_points("missing") == []


def _write_csv(path: Path) -> Path:
    rows = ["cat,label,review"]
    for i in range(12):  # enough reviews for a significant z; "第i台" keeps the quoted clauses distinct
        rows += [f"手机,0,第{i}台{t}" for t in NEGATIVE] + [f"手机,1,第{i}台{t}" for t in POSITIVE]
    rows += ["热水器,1,加热很快，安装师傅专业", "热水器,0,安装费太贵，漏水"]
    path.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_loader_reads_labels_and_filters_categories(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "r.csv")
    rows = list(load_review_csv(path, ["热水器"]))
    assert rows == [
        ("热水器", False, "加热很快，安装师傅专业"),
        ("热水器", True, "安装费太贵，漏水"),
    ]
    corpus = corpus_from_csv(path)
    assert corpus.categories == ["手机", "热水器"]
    assert corpus.review_count("手机", negative=True) == 12 * len(NEGATIVE)


def test_csv_loader_rejects_wrong_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="cat,label,review"):
        list(load_review_csv(bad))


def test_report_command_writes_html_json_and_csv(tmp_path: Path) -> None:
    reviews = _write_csv(tmp_path / "r.csv")
    queries = tmp_path / "q.txt"
    queries.write_text(
        "\n".join(f"{i}\t{q}" for i, q in enumerate(["蓝牙耳机", "汉服 女", "手机壳"] * 30)),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["report", "--out", str(out), "--reviews", str(reviews), "--queries", str(queries), "--top", "3"]
    result = CliRunner().invoke(insights, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert data["pain_points"]["手机"][0]["aspect"] in {"电池", "死机"}
    assert data["unmet"] == []  # a query list has no sessions: nothing is simulated
    assert {s["part"] for s in data["sources"]} == {"pain_points", "queries"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "电池" in html and "Unmet search needs" in html and "http" not in html.split("<body>")[0]
    assert "unmet needs need sessions" in html
    rows = (out / "pain_points.csv").read_text(encoding="utf-8-sig").splitlines()
    assert rows[0].startswith("category,category_id,aspect") and len(rows) >= 2
    assert (out / "top_queries.csv").read_text(encoding="utf-8-sig").count("蓝牙耳机") == 1


def test_report_rejects_a_missing_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(insights, ["report", "--out", str(tmp_path), "--reviews", str(tmp_path / "no.csv")])
    assert result.exit_code != 0 and "does not exist" in result.output
