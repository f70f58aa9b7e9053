"""``bertrt predict``: texts from arguments, stdin lines or JSONL; one JSON result per line.

Also what adversarial input must not break: lines split on "\\n" only; stdin and TEXT arguments decoded
strictly as UTF-8 (also under the C locale); deeply nested JSONL is a clean "line N" error; a user field
named ``result``, NaN/1e999, blank lines, fill-mask ``--top-k all``, ``--version`` and task flags that do
not fit (exit 2); and the exit codes: 2 for usage, 1 for runtime errors, with one error line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bertrt
import bertrt.session
from bertrt import lines
from bertrt.cli import main
from bertrt.errors import InputError
from bertrt.results import to_jsonable

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, stdin_text="", monkeypatch=None, capsys=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_texts_from_arguments(runtime_bundle, monkeypatch, capsys):
    import bertrt

    folder = runtime_bundle("bert", "text-classification")
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "Maria loves Groningen.", "Paris"],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    expected = bertrt.pipeline(None, folder, precision="fp32")(["Maria loves Groningen.", "Paris"])
    assert [line["text"] for line in lines] == ["Maria loves Groningen.", "Paris"]
    assert [line["result"]["label"] for line in lines] == [e["label"] for e in expected]
    assert all(abs(line["result"]["score"] - e["score"]) < 1e-6 for line, e in zip(lines, expected))


def test_predict_stdin_lines_with_task_options(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "token-classification")
    code, out, _ = _run(
        [
            "predict",
            str(folder),
            "--precision",
            "fp32",
            "--aggregation-strategy",
            "first",
            "--stride",
            "4",
            "--ignore-labels",
        ],
        "Maria loves Groningen.\nJohn Smith\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["text"] for line in lines] == ["Maria loves Groningen.", "John Smith"]
    assert lines[1]["result"] and all("entity_group" in e for e in lines[1]["result"])  # nothing ignored


def test_predict_jsonl_passes_fields_through(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "fill-mask")
    # (a blank line between them is malformed: test_blank_lines_one_rule_one_output_line_per_input_line)
    stdin = '{"id": 7, "text": "Maria [MASK] Groningen."}\n{"text": "a [MASK]", "tag": ["x"]}\n'
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "--jsonl", "--top-k", "2"],
        stdin,
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["id"] == 7 and lines[1]["tag"] == ["x"] and "text" not in lines[0]
    assert [len(line["result"]) for line in lines] == [2, 2]


def test_predict_feature_extraction_vectors(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "feature-extraction")
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "--pooling", "mean", "--normalize", "hi"],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    vector = json.loads(out)["result"]
    assert len(vector) == 32 and abs(sum(v * v for v in vector) - 1) < 1e-4


@pytest.mark.parametrize(
    "stdin, line",
    [
        ('{"text": "ok"}\n{"text": "ok"\n', 2),
        ('{"text": "ok"}\n\n[1, 2]\n', 3),
        ('{"txt": "missing"}\n', 1),
    ],
)
def test_malformed_jsonl_names_the_line(runtime_bundle, stdin, line, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    code, out, err = _run(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"],
        stdin,
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 1
    assert out == ""  # nothing partial on stdout
    assert f"line {line}" in err and len(err.strip().splitlines()) == 1


def test_predict_errors_exit_codes(optimum_folder, monkeypatch, capsys):
    folder = optimum_folder("bert", "text-classification")
    code, out, err = _run(
        ["predict", str(folder), "x"], monkeypatch=monkeypatch, capsys=capsys
    )  # no int8 file
    assert code == 1 and out == "" and "ONNX files present: model.onnx" in err
    with pytest.raises(SystemExit) as info:
        main(["predict", str(folder), "--precision", "fp8", "x"])
    assert info.value.code == 2


def test_console_script_subprocess(runtime_bundle):
    folder = runtime_bundle("bert", "text-classification")
    proc = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "predict", str(folder), "--precision", "fp32", "--top-k", "all"],
        check=False,
        input="hello\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["result"]) == 3


def _cli(argv, monkeypatch, capsys, stdin: str | bytes = ""):
    """(exit code, stdout, stderr) of ``bertrt ARGV``; bytes stdin comes with a byte buffer, as sys.stdin."""
    if isinstance(stdin, bytes):
        stream = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="surrogateescape")
    else:
        stream = io.StringIO(stdin)
    monkeypatch.setattr(sys, "stdin", stream)
    capsys.readouterr()  # drop what building the bundle logged
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _strict(text: str) -> list:
    """The JSON lines of ``text``, refusing NaN/Infinity (what a strict JSON reader does); split with
    str.splitlines() on purpose: the output holds no Unicode line break but the final "\\n" of each line."""

    def refuse(name):
        raise ValueError(f"{name} in output")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if "error" in ln]) == 1


def _c_locale_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LANG")}
    env["LC_ALL"] = "C"
    return env


# -- lines end at "\n" only ---------------------------------------------------------------------------------
def test_split_lines_breaks_on_newline_only():
    text = "page one\fpage two\nvt\vfs\x1cgs\x1drs\x1e\nnel\x85ls\u2028ps\u2029\r\n\nlast"
    assert lines.split_lines(text) == [
        "page one\fpage two",
        "vt\vfs\x1cgs\x1drs\x1e",
        "nel\x85ls\u2028ps\u2029",
        "",
        "last",
    ]
    assert (
        lines.split_lines("a\n") == ["a"] and lines.split_lines("") == [] and lines.split_lines("\n") == [""]
    )
    assert lines.split_lines("a\r\r\nb") == ["a\r", "b"]  # one "\r" before "\n" is dropped, no more


def test_predict_output_rows_line_up_with_input_lines(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    texts = ["page one\fpage two", "a\x85b\u2028c\u2029d", "vt\vfs\x1c", "crlf"]
    stdin = "\n".join(texts[:3]) + "\n" + texts[3] + "\r\n"
    code, out, err = _cli(["predict", str(folder), "--precision", "fp32"], monkeypatch, capsys, stdin)
    assert code == 0, err
    assert [row["text"] for row in _strict(out)] == texts


def test_jsonl_line_holding_u2028_is_valid(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    stdin = '{"id": 1, "text": "a\u2028b", "note": "x\u2029y\x85"}\n{"id": 2, "text": "c\\fd"}\n'
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 0, err
    rows = _strict(out)
    assert [row["id"] for row in rows] == [1, 2] and rows[0]["note"] == "x\u2029y\x85"


# -- stdin and TEXT arguments are UTF-8, decoded strictly ---------------------------------------------------
def test_invalid_stdin_bytes_name_line_and_byte_column(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32"], monkeypatch, capsys, b"ok\nfine \xff bad\n"
    )
    assert code == 1 and out == ""
    assert "stdin is not valid UTF-8 (line 2, byte column 6: 0xff" in err
    _one_line_error(err)


def test_invalid_stdin_under_the_c_locale(runtime_bundle):
    """LC_ALL=C makes Python read stdin with surrogateescape: the bytes must still be refused, by line."""
    folder = runtime_bundle("bert", "text-classification")
    for argv, data, message in (
        ([], b"ok\n\xed\xa0\x80 surrogate\n", "stdin is not valid UTF-8 (line 2, byte column 1: 0xed"),
        (
            ["--jsonl"],
            b'{"text": "ok"}\n{"text": "b\xffd"}\n',
            "stdin is not valid UTF-8 (line 2, byte column",
        ),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "bertrt.cli", "predict", str(folder), "--precision", "fp32", *argv],
            input=data,
            capture_output=True,
            env=_c_locale_env(),
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 1 and proc.stdout == b"", err
        assert message in err and "Traceback" not in err and "TypeError" not in err


def test_invalid_text_argument_names_its_position_under_the_c_locale(runtime_bundle):
    folder = runtime_bundle("bert", "text-classification")
    proc = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "predict", str(folder), "--precision", "fp32", "ok", b"b\xffd"],
        capture_output=True,
        env=_c_locale_env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1 and proc.stdout == b"", err
    assert "TEXT argument 2 is not valid UTF-8 (byte column 2: 0xff" in err and "Traceback" not in err


def test_lone_surrogates_in_text_are_refused_by_position(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "text-classification"))
    code, out, err = _cli(["predict", folder, "--precision", "fp32", "ok", "x\ud800"], monkeypatch, capsys)
    assert code == 1 and out == "" and "TEXT argument 2 holds a lone surrogate U+D800 (character 1)" in err
    code, out, err = _cli(["predict", folder, "--precision", "fp32"], monkeypatch, capsys, "ok\nab\ud800\n")
    assert code == 1 and out == "" and "stdin holds a lone surrogate U+D800 (line 2, character 2)" in err
    stdin = '{"text": "ok"}\n{"text": "\\ud800"}\n{"text": "ok", "\\udfff": 1}\n'
    code, out, err = _cli(["predict", folder, "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin)
    assert code == 1 and out == ""
    assert "line 2: string in 'text' holds a lone surrogate U+D800" in err
    assert "line 3: field name '\\udfff' holds a lone surrogate U+DFFF" in err
    _one_line_error(err)


# -- pathological JSON is a clean "line N" error ------------------------------------------------------------
@pytest.mark.parametrize("depth", [1_000, 100_000, lines.MAX_JSON_DEPTH + 1])
def test_deeply_nested_jsonl_is_a_clean_line_error(runtime_bundle, monkeypatch, capsys, depth):
    folder = runtime_bundle("bert", "text-classification")
    nested = "[" * depth + "]" * depth
    stdin = '{"text": "ok"}\n{"text": "ok", "meta": ' + nested + "}\n"
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 1 and out == ""
    assert "line 2: JSON nested too deeply" in err and "RecursionError" not in err
    _one_line_error(err)


def test_parse_json_line_limits_and_to_jsonable_never_recurse_out():
    deepest = "[" * lines.MAX_JSON_DEPTH + "]" * lines.MAX_JSON_DEPTH
    assert lines.parse_json_line(deepest, 1) is not None
    with pytest.raises(InputError, match=r"^line 4: JSON nested too deeply"):
        lines.parse_json_line("{" + '"a": {' * 5_000 + "}" * 5_001, 4)
    with pytest.raises(InputError, match=r"^line 2: an integer of 10000 digits is too large"):
        lines.parse_json_line("1" * 10_000, 2)  # more digits than Python converts
    value: list = []
    for _ in range(100_000):  # built without recursion, deeper than the recursion limit
        value = [value]
    with pytest.raises(InputError, match="nested too deeply"):
        to_jsonable(value)


# -- no data lost or misreported ----------------------------------------------------------------------------
def test_a_user_field_named_result_is_refused_not_overwritten(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    stdin = '{"text": "ok", "id": 1}\n{"text": "ok", "result": "mine"}\n'
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 1 and out == ""
    assert "line 2: has a field named 'result'" in err and "rename it" in err


@pytest.mark.parametrize(
    "field, message",
    [
        ("NaN", "line 2: NaN is not valid JSON"),
        ("-Infinity", "line 2: -Infinity is not valid JSON"),
        ("1e999", "line 2: number 1e999 is out of range"),
        ('[1, {"x": -1e400}]', "line 2: number -1e400 is out of range"),
    ],
)
def test_non_finite_numbers_are_refused_at_read_time(runtime_bundle, monkeypatch, capsys, field, message):
    folder = runtime_bundle("bert", "text-classification")
    stdin = '{"text": "ok", "score": 0.5}\n{"text": "ok", "score": ' + field + "}\n"
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 1 and out == "" and message in err
    _one_line_error(err)


def test_output_is_strict_json(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    stdin = '{"text": "ok", "score": 1e308, "tiny": 1e-400, "n": 12345678901234567890}\n'
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 0, err
    row = _strict(out)[0]
    assert row["score"] == 1e308 and row["tiny"] == 0.0 and row["n"] == 12345678901234567890

    def nan_scores(self, inputs, **options):
        return [{"label": "LABEL_0", "score": float("nan")} for _ in inputs]

    monkeypatch.setattr(bertrt.Pipeline, "__call__", nan_scores)
    code, out, err = _cli(["predict", str(folder), "--precision", "fp32", "a", "b"], monkeypatch, capsys)
    assert code == 1 and out == "" and "non-finite score (NaN or Infinity) for TEXT argument 1" in err


def test_blank_lines_one_rule_one_output_line_per_input_line(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    # plain: a blank (or whitespace-only) line is an (empty) text and keeps its row
    code, out, err = _cli(["predict", str(folder), "--precision", "fp32"], monkeypatch, capsys, "a\n\n \nb\n")
    assert code == 0, err
    assert [row["text"] for row in _strict(out)] == ["a", "", " ", "b"]
    # --jsonl: a blank line holds no object; skipping it would shift the output against the input
    stdin = '{"text": "a"}\n\n{"text": "b"}\n \t\n'
    code, out, err = _cli(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"], monkeypatch, capsys, stdin
    )
    assert code == 1 and out == ""
    assert "line 2: blank line" in err and "line 4: blank line" in err and "line 3" not in err


def test_fill_mask_top_k_all_is_a_usage_error(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "fill-mask"))
    code, out, err = _cli(
        ["predict", folder, "--precision", "fp32", "--top-k", "all", "a [MASK]"], monkeypatch, capsys
    )
    assert code == 2 and out == ""
    assert "--top-k" in err and "fill-mask" in err and "'all'" in err
    _one_line_error(err)
    code, out, _ = _cli(
        ["predict", folder, "--precision", "fp32", "--top-k", "3", "a [MASK]"], monkeypatch, capsys
    )
    assert code == 0 and len(_strict(out)[0]["result"]) == 3
    # text-classification keeps 'all' (every label)
    clf = str(runtime_bundle("bert", "text-classification"))
    code, out, _ = _cli(["predict", clf, "--precision", "fp32", "--top-k", "all", "x"], monkeypatch, capsys)
    assert code == 0 and len(_strict(out)[0]["result"]) == 3


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"bertrt {bertrt.__version__}\n" == "bertrt 0.1.0\n"
    proc = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "bertrt 0.1.0\n"


@pytest.mark.parametrize(
    "task, args, flags",
    [
        ("token-classification", ["--pooling", "mean"], "--pooling is not an option of token-classification"),
        ("token-classification", ["--normalize", "--targets", "a"], "--normalize, --targets are not options"),
        ("text-classification", ["--stride", "4"], "--stride is not an option of text-classification"),
        (
            "fill-mask",
            ["--aggregation-strategy", "first"],
            "--aggregation-strategy is not an option of fill-mask",
        ),
    ],
)
def test_flags_that_do_not_fit_the_bundles_task_exit_2(
    runtime_bundle, monkeypatch, capsys, task, args, flags
):
    folder = str(runtime_bundle("bert", task))
    code, out, err = _cli(["predict", folder, "--precision", "fp32", *args, "x [MASK]"], monkeypatch, capsys)
    assert code == 2 and out == "" and flags in err and f"{task} takes: --" in err
    _one_line_error(err)


def test_flags_are_checked_against_a_given_task_before_the_bundle_loads(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "no-bundle-here")
    code, out, err = _cli(["predict", missing, "--task", "ner", "--top-k", "2", "x"], monkeypatch, capsys)
    assert code == 2 and "--top-k is not an option of token-classification" in err
    code, out, err = _cli(["predict", missing, "--jsonl", "x"], monkeypatch, capsys)
    assert code == 2 and "--jsonl reads stdin" in err


# -- exit codes: 2 for usage, 1 for runtime errors, one line ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-size", "0"],
        ["--batch-size", "x"],
        ["--max-tokens-per-batch", "-5"],
        ["--threads", "0"],
        ["--top-k", "0"],
        ["--stride", "-1"],
        ["--aggregation-strategy", "median"],
        ["--no-such-flag"],
        ["--precision", "fp8"],
    ],
)
def test_usage_errors_exit_2_with_one_line(runtime_bundle, monkeypatch, capsys, args):
    folder = runtime_bundle("bert", "token-classification")
    code, out, err = _cli(["predict", str(folder), *args, "Maria"], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert "error:" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["{folder}-missing", "x"], "", "no such folder"),
        (["{folder}", "--stride", "200", "--aggregation-strategy", "first", "x"], "", "stride"),
        (["{folder}", "--max-tokens-per-batch", "8", "x"], "", "too small"),
        (["{folder}", "--jsonl"], '{"text": "ok"}\n{"text": 5}\n', "line 2"),
        (["{folder}"], None, "not valid UTF-8"),
    ],
)
def test_runtime_errors_exit_1_with_one_line_and_no_output(
    runtime_bundle, monkeypatch, capsys, args, stdin, message
):
    folder = str(runtime_bundle("bert", "token-classification"))
    argv = ["predict", *[a.format(folder=folder) for a in args], "--precision", "fp32"]
    if stdin is None:  # bytes that are not UTF-8 on stdin
        monkeypatch.setattr(
            sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe bad\n"), encoding="utf-8")
        )
        code = main(argv)
        captured = capsys.readouterr()
        out, err = captured.out, captured.err
    else:
        code, out, err = _cli(argv, monkeypatch, capsys, stdin)
    assert code == 1 and out == ""  # no partial JSON line
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unexpected_errors_exit_1_with_one_line(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "token-classification"))

    def boom(self, batch):
        raise RuntimeError("onnxruntime failed\nwith a second line")

    monkeypatch.setattr(bertrt.session.OnnxSession, "run", boom)
    code, out, err = _cli(["predict", folder, "--precision", "fp32", "a", "b"], monkeypatch, capsys)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.strip() == "bertrt predict: error: RuntimeError: onnxruntime failed with a second line"


@pytest.mark.parametrize("jsonl", [False, True])
def test_a_leading_byte_order_mark_on_stdin_is_no_text(runtime_bundle, jsonl, monkeypatch, capsys):
    folder = runtime_bundle("bert", "token-classification")
    lines = (
        ['{"text": "Maria loves Groningen."}', '{"text": "x"}'] if jsonl else ["Maria loves Groningen.", "x"]
    )
    argv = ["predict", str(folder), "--precision", "fp32"] + (["--jsonl"] if jsonl else [])
    code, out, err = _run(argv, "\ufeff" + "\n".join(lines) + "\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    first = json.loads(out.splitlines()[0])
    if not jsonl:
        assert first["text"] == "Maria loves Groningen."
    _, plain, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "Maria loves Groningen."],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert first["result"] == json.loads(plain)["result"]  # same entity offsets as without the mark


def test_list_flags_take_one_value_each_so_texts_after_them_stay_texts(runtime_bundle, monkeypatch, capsys):
    ner = runtime_bundle("bert", "token-classification")
    argv = ["predict", str(ner), "--precision", "fp32", "--aggregation-strategy", "first"]
    code, out, err = _run(
        argv + ["--ignore-labels", "O", "--ignore-labels", "MISC", "Maria flew to Groningen", "x"],
        "stdin is never read when texts are given\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["text"] for line in lines] == ["Maria flew to Groningen", "x"]
    assert all(e["entity_group"] not in ("O", "MISC") for line in lines for e in line["result"])
    mask = runtime_bundle("bert", "fill-mask")
    code, out, err = _run(
        [
            "predict",
            str(mask),
            "--precision",
            "fp32",
            "--targets",
            "a",
            "--targets",
            "b",
            "Maria [MASK] here.",
        ],
        "stdin is never read\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(out)["text"] == "Maria [MASK] here." and len(json.loads(out)["result"]) == 2


@pytest.mark.parametrize(
    ("texts", "stdin", "where"),
    [(["a [MASK]", "no mask"], "", "TEXT argument 2"), ([], "a [MASK]\n\nno mask\n", "lines 2, 3")],
)
def test_fill_mask_without_a_mask_names_the_line_or_argument(
    runtime_bundle, texts, stdin, where, monkeypatch, capsys
):
    folder = runtime_bundle("bert", "fill-mask")
    code, out, err = _run(
        ["predict", str(folder), "--precision", "fp32", *texts], stdin, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 1 and out == ""
    assert f"{where}: no mask token" in err and "index" not in err
