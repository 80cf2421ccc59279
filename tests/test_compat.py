"""The TRL version contract: tested releases pass, others are checked against the surface the glue relies on."""

from __future__ import annotations

import warnings

import pytest
from packaging.version import Version
from trl import DPOTrainer

from trl_adpo.compat import SURFACES, TESTED, check_trl, surface_problems
from trl_adpo.trainer import TRL_VERSION

LINE = "0.28" if TRL_VERSION < Version("0.29") else "1.x"
UNTESTED = Version("1.99.0")
"""A TRL 1.x release that was never tested (what a user gets by forcing a newer TRL)."""


def test_the_installed_trl_is_a_tested_release_whose_surface_is_there():
    low, high = TESTED[LINE]
    assert low <= TRL_VERSION < high
    assert surface_problems(DPOTrainer, LINE) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_trl(TRL_VERSION, DPOTrainer) == LINE


def test_an_untested_release_is_checked_against_the_surface_of_the_1x_glue():
    if LINE == "1.x":  # the same surface: it goes on, and says the release is untested
        with pytest.warns(UserWarning, match=r"TRL 1.99.0 is outside the releases trl_adpo was tested with"):
            assert check_trl(UNTESTED, DPOTrainer) == "1.x"
    else:  # TRL 0.28's DPOTrainer, presented as 1.99, has none of what the 1.x glue needs
        with pytest.raises(ImportError, match=r"TRL 1.99.0 is installed, .* DPOTrainer._compute_loss is gone"):
            check_trl(UNTESTED, DPOTrainer)


@pytest.mark.parametrize("method", list(SURFACES[LINE]))
def test_a_changed_signature_is_named(monkeypatch, method):
    monkeypatch.setattr(DPOTrainer, method, lambda self, renamed_argument: None)
    expected = f"DPOTrainer.{method} takes ('self', 'renamed_argument'), the glue calls it with"
    assert any(problem.startswith(expected) for problem in surface_problems(DPOTrainer, LINE))
    if LINE == "1.x":  # and an untested release with it fails at import, with the versions that work
        with pytest.raises(ImportError) as error:
            check_trl(UNTESTED, DPOTrainer)
        message = str(error.value)
        assert message.startswith("TRL 1.99.0 is installed, but trl_adpo was tested with TRL 0.28.x")
        assert expected in message and "pip install 'trl>=1.16,<1.17'" in message


def test_a_removed_method_is_named(monkeypatch):
    method = next(iter(SURFACES[LINE]))
    monkeypatch.delattr(DPOTrainer, method)
    assert f"DPOTrainer.{method} is gone" in surface_problems(DPOTrainer, LINE)


def test_a_compute_loss_without_fused_log_probs_is_refused():
    """The 1.x glue records the per-token log-probs of TRL's fused LM head: a DPOTrainer with the 1.x surface whose
    `_compute_loss` no longer asks for them is refused."""

    class ChangedDPOTrainer:
        def _compute_loss(self, model, inputs, return_outputs):
            return model(**inputs).loss

        def compute_ref_log_probs(self, model, inputs): ...

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name): ...

        def _precompute_ref_logps(self, dataset, name, batch_size): ...

        def _set_signature_columns_if_needed(self): ...

    assert surface_problems(ChangedDPOTrainer, "1.x") == [
        "DPOTrainer._compute_loss no longer asks the model for per-token log-probs ('fused_lm_head=True' is gone)"
    ]


def test_a_trl_older_than_0_28_is_refused():
    with pytest.raises(ImportError, match=r"TRL 0.27.0 is installed, older than any release trl_adpo works with"):
        check_trl(Version("0.27.0"), DPOTrainer)
