"""Fixtures: small real BNNs, converted by the real LCE converter.

The helpers behind them live in ``tests/helpers.py`` (importable by tests).
"""

from __future__ import annotations

import pytest
from helpers import BUNDLED, make_tiny_bnn

from bnnconvert import _tf


@pytest.fixture(scope="session")
def tiny_bnn():
    """A small Keras BNN (32x32x3 in, 10 classes)."""
    return make_tiny_bnn()


@pytest.fixture(scope="session")
def tiny_bnn_tflite(tiny_bnn) -> bytes:
    """``tiny_bnn`` converted by LCE's converter (arm target)."""
    return _tf.lce().convert_keras_model(tiny_bnn)


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory):
    """The bundled digits model exported once per session (arm64, defaults): an ExportResult.

    Shared by every module that only reads the export; don't modify its files.
    """
    from bnnconvert.export import export

    return export(BUNDLED, target="arm64", output_dir=tmp_path_factory.mktemp("digits-arm64"))


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the command line in this process: ``cli(*args) -> (exit code, stdout, stderr)``.

    Global state a run sets (--debug's environment variable, --verbose) is reset after it.
    """
    from bnnconvert import _tf
    from bnnconvert.cli.main import run

    monkeypatch.setenv("COLUMNS", "120")

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.delenv("BNNCONVERT_DEBUG", raising=False)
        try:
            code = run(list(args))
        finally:
            _tf.set_verbose(False)
            monkeypatch.delenv("BNNCONVERT_DEBUG", raising=False)
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


# The quick local run (``pytest -m "not slow"``) leaves out, besides the tests
# marked ``slow`` where they are defined, these: each took 2.8 s or more
# (``pytest --durations=0`` on 2 cores), and together over half the quick run's
# time. CI runs every test. A listed id that no longer exists fails collection,
# so the list cannot rot silently.
QUICK_RUN_EXCLUDES = frozenset(
    {
        "tests/test_android_core.py::test_java_core_matches_python",
        "tests/test_api.py::test_docs_api_examples_run_as_written",
        "tests/test_audit.py::test_clean_binary_densenet_has_no_binary_layer_diagnostic[binarydensenet_digits-1-9]",
        "tests/test_audit.py::test_export_without_strict_writes_the_model_and_the_audit",
        "tests/test_audit.py::test_strict_export_of_a_clean_model_passes",
        "tests/test_bench_reports.py::test_cli_prints_a_table_and_writes_three_reports",
        "tests/test_bench_reports.py::test_sigint_to_the_cli_exits_130_with_partial_reports",
        "tests/test_bench_ssh.py::test_bench_over_ssh_with_the_python_runner",
        "tests/test_bench_ssh.py::test_injection_named_models_are_harmless_over_ssh",
        "tests/test_bench_ssh.py::test_killing_sshd_mid_run_keeps_partial_results",
        "tests/test_checkpoint.py::test_every_format_loads_quietly_from_a_clean_environment",
        "tests/test_checkpoint.py::test_keras_file_round_trips",
        "tests/test_checkpoint.py::test_saved_model_is_rebuilt_from_config_and_variables_only",
        "tests/test_cli.py::test_ctrl_c_during_export_says_so_and_exits_130",
        "tests/test_cli.py::test_export_is_quiet",
        "tests/test_cli.py::test_keras3_already_imported_is_a_clear_error",
        "tests/test_export.py::test_disk_full_during_export_is_one_line",
        "tests/test_export.py::test_input_shape_rebuilds_the_model",
        "tests/test_export.py::test_killed_export_never_leaves_a_partial_model",
        "tests/test_export.py::test_other_targets_export_and_run[xcore]",
        "tests/test_export.py::test_parity_check_is_marked_lossy_only_for_lossy_options",
        "tests/test_hostile_configs.py::test_mutated_configs_load_only_allowlisted_objects",
        "tests/test_int8_io.py::test_a_flatbuffer_lce_made_with_int8_io_validates",
        "tests/test_int8_lce_parity.py::test_no_optimize_export_is_op_for_op_lces_conversion[functional]",
        "tests/test_int8_lce_parity.py::test_no_optimize_export_is_op_for_op_lces_conversion[sequential]",
        "tests/test_models.py::test_bundled_weights_h5_exports_with_arch_like_the_bundled_model",
        "tests/test_models.py::test_every_binary_conv_becomes_lce_bconv2d[binarydensenet28]",
        "tests/test_passes_export.py::test_export_runs_exact_passes_by_default_and_reports_them",
        "tests/test_passes_export.py::test_no_optimize_keeps_lce_output",
        "tests/test_passes_float_weights.py::test_fp16_keeps_top1_agreement_100_percent_on_the_bundled_split",
        "tests/test_passes_float_weights.py::test_full_int8_float_layers_keep_accuracy_within_one_point",
        "tests/test_passes_float_weights.py::test_int8_weights_keep_accuracy_within_one_point",
        "tests/test_passes_fold.py::test_binary_densenet_with_random_bn_statistics_folds_bit_exactly[28]",
        "tests/test_passes_fold.py::test_bundled_model_folds_every_pre_sign_mul_bit_exactly",
        "tests/test_reference.py::test_binary_densenet_small_input[28]",
        "tests/test_reference.py::test_bitpacked_output_is_exercised",
        "tests/test_reference.py::test_bundled_model_every_tensor",
        "tests/test_tflite_ir.py::test_fuzz_smoke",
        "tests/test_validate.py::test_bundled_model_validates",
        "tests/test_validate_faults.py::test_unplanted_export_passes_with_no_fault_row[default]",
        "tests/test_validate_lossy.py::test_a_few_samples_with_one_quantization_flip_pass_with_the_counts",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark :data:`QUICK_RUN_EXCLUDES` slow; complain about listed ids that are gone."""
    found = set()
    for item in items:
        if item.nodeid in QUICK_RUN_EXCLUDES:
            item.add_marker(pytest.mark.slow)
            found.add(item.nodeid)
    collected_files = {item.nodeid.split("::")[0] for item in items}
    missing = {
        nodeid
        for nodeid in QUICK_RUN_EXCLUDES - found
        if nodeid.split("::")[0] in collected_files and not config.getoption("-k")
    }
    if missing and not config.getoption("markexpr"):
        raise pytest.UsageError(f"QUICK_RUN_EXCLUDES names tests that do not exist: {missing}")
