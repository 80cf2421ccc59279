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


@pytest.mark.skipif(LINE != "1.x", reason="the TRL 1.x glue reads TRL's forwards; 0.28's overrides them")
@pytest.mark.parametrize("reference", ["explicit", "the policy's base"])
def test_a_trl_whose_forwards_differ_fails_at_the_first_step_naming_its_version(
    tmp_path, monkeypatch, load, tokenizer, make_dataset, reference
):
    """A TRL 1.x release whose `_compute_loss` calls the models another number of times than the glue reads (here:
    one more forward of the policy) fails loudly at the first step instead of training on the wrong log-probs."""
    from peft import LoraConfig

    from trl_adpo import ADPOConfig, ADPOTrainer

    original = DPOTrainer._compute_loss

    def changed(self, model, inputs, return_outputs=False):
        model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )  # a forward the glue does not expect
        return original(self, model, inputs, return_outputs)

    monkeypatch.setattr(DPOTrainer, "_compute_loss", changed)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]) if reference != "explicit" else None
    trainer = ADPOTrainer(
        load(),
        ref_model=load() if reference == "explicit" else None,
        processing_class=tokenizer,
        args=ADPOConfig(
            output_dir=str(tmp_path),
            bf16=False,
            report_to="none",
            max_steps=1,
            save_strategy="no",
            disable_tqdm=True,
            per_device_train_batch_size=2,
        ),
        train_dataset=make_dataset(4),
        peft_config=lora,
    )
    expected = "the policy 1, the reference 1" if reference == "explicit" else "the policy 2"
    with pytest.raises(
        RuntimeError,
        match=rf"TRL {TRL_VERSION}: DPOTrainer's forwards are not the ones ADPOTrainer's "
        rf"TRL 1.x glue reads .* where the glue expects {expected}\. Install a tested TRL",
    ):
        trainer.train()


def test_a_trl_older_than_0_28_is_refused():
    with pytest.raises(ImportError, match=r"TRL 0.27.0 is installed, older than any release trl_adpo works with"):
        check_trl(Version("0.27.0"), DPOTrainer)
