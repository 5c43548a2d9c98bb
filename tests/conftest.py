"""Fixtures shared by test modules."""

import pytest
import torch


@pytest.fixture(scope="session")
def sft_dir(tmp_path_factory):
    """A briefly supervised default RLHF policy (the RL tests start from it)."""
    pytest.importorskip("transformers")
    from pgrad.rlhf import pipeline
    from pgrad.rlhf.sft import SFTConfig

    torch.set_num_threads(1)
    return pipeline.run_sft(SFTConfig(steps=400, seed=0), tmp_path_factory.mktemp("rlhf") / "sft")
