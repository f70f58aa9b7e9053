"""onnxruntime session options the runtime sets: intra-op spinning reaches the SessionOptions."""

from __future__ import annotations

from dataclasses import replace

import pytest

import bertrt
from bertrt import backends
from bertrt.session import session_options

SPIN = "session.intra_op.allow_spinning"


@pytest.mark.parametrize("spinning, entry", [(False, "0"), (True, "1")])
def test_session_options_sets_spinning(spinning, entry):
    assert session_options(1, spinning=spinning).get_session_config_entry(SPIN) == entry


def test_session_options_leaves_spinning_to_onnxruntime_by_default():
    options = session_options(1)
    with pytest.raises(RuntimeError, match="does not have configuration"):  # a key never set
        options.get_session_config_entry(SPIN)


def test_a_plan_without_spinning_reaches_the_pipelines_session(runtime_bundle):
    bundle = runtime_bundle("bert", "text-classification")
    plan = replace(backends.plan(bundle, "onnxruntime", "fp32", 1), spinning=False)
    pipe = bertrt.pipeline("text-classification", bundle, plan=plan)
    options = pipe.session._session.get_session_options()
    assert options.get_session_config_entry(SPIN) == "0"
    assert pipe("a text")  # it runs


@pytest.mark.parametrize(
    "flag, spinning", [([], None), (["--spinning", "off"], False), (["--spinning", "on"], True)]
)
def test_the_spinning_flag_reaches_the_plan(runtime_bundle, flag, spinning):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    backends.add_backend_arguments(parser)
    args = parser.parse_args([str(runtime_bundle("bert", "text-classification")), *flag])
    assert backends.plan_from_args(args).spinning is spinning
