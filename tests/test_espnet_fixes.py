"""ESPnet's ErrorCalculator on validation batches of non-speech segments only."""

import pytest


@pytest.fixture
def calculator(asr_task):
    from espnet.nets.e2e_asr_common import ErrorCalculator

    from espnet_llm_plugin.espnet_fixes import apply_espnet_fixes

    apply_espnet_fixes()
    apply_espnet_fixes()  # idempotent: wraps once
    return ErrorCalculator(["<blank>", "a", "b", "<space>", "<sos/eos>"], "<space>", "<blank>", True, True)


def test_all_empty_references_give_none_not_zero_division(calculator):
    assert calculator.calculate_cer(["ab", "a"], ["", ""]) is None
    assert calculator.calculate_wer(["ab", "a"], ["", ""]) is None


def test_normal_batches_keep_espnet_values(calculator):
    assert calculator.calculate_cer(["ab", "a"], ["ab", "b"]) == pytest.approx(1 / 3)
    assert calculator.calculate_wer(["a b", ""], ["a b", "b"]) == pytest.approx(1 / 3)
    assert not hasattr(calculator.calculate_cer.__wrapped__, "__wrapped__")


# ---------------------------------------------------------------- checkpoint files
class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a file that runs code when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class FailsToPickle:
    """Pickling this fails half way, as a write on a full disk does."""

    def __reduce__(self):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def crafted(tmp_path):
    import torch

    marker = tmp_path / "marker"
    path = tmp_path / "crafted.pth"
    torch.save({"weight": torch.zeros(2, 2), "bias": WritesMarker(marker)}, path)
    return path, marker


@pytest.fixture
def fixes(asr_task):
    from espnet_llm_plugin.espnet_fixes import apply_espnet_fixes

    apply_espnet_fixes()


def test_crafted_file_is_refused_naming_it_and_runs_nothing(crafted):
    from espnet_llm_plugin.espnet_fixes import UnsafeCheckpointError, load_checkpoint

    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError, match=rf"{path}: refused to load.*GLOBAL \S*open"):
        load_checkpoint(path, map_location="cpu", weights_only=False)  # ESPnet's argument is overridden
    assert not marker.exists()


def test_espnet_checkpoint_contents_still_load(tmp_path):
    import datetime

    import numpy as np
    import torch

    from espnet_llm_plugin.espnet_fixes import load_checkpoint

    # what ESPnet's checkpoint.pth holds besides tensors: numpy statistics, time deltas
    state = {
        "model": {"w": torch.arange(4.0)},
        "reporter": {
            "epoch": 2,
            "stats": {
                1: {
                    "valid": {
                        "acc": np.float64(0.5),
                        "n": np.int64(3),
                        "f": np.float32(1.5),
                        "time": datetime.timedelta(seconds=3),
                    }
                }
            },
        },
        "optimizers": [torch.optim.Adam([torch.nn.Parameter(torch.ones(2))]).state_dict()],
        "schedulers": [None],
        "scaler": None,
    }
    torch.save(state, tmp_path / "checkpoint.pth")
    loaded = load_checkpoint(tmp_path / "checkpoint.pth", map_location="cpu")
    assert loaded["reporter"]["stats"][1]["valid"]["acc"] == 0.5
    assert loaded["reporter"]["stats"][1]["valid"]["time"] == datetime.timedelta(seconds=3)
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))


@pytest.mark.parametrize("name,hint", [("checkpoint.pth", "--resume cannot continue"), ("3epoch.pth", "")])
def test_truncated_file_is_named(tmp_path, name, hint):
    import torch

    from espnet_llm_plugin.espnet_fixes import CheckpointLoadError, load_checkpoint

    path = tmp_path / name
    torch.save({"w": torch.randn(1000)}, path)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 30):  # torch's reader fails differently
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointLoadError, match=rf"{path}: truncated or corrupt checkpoint.*{hint}"):
            load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointLoadError, match="truncated"):
        load_checkpoint(path)


def test_save_is_atomic_when_the_write_fails(tmp_path):
    import torch

    from espnet_llm_plugin.espnet_fixes import save_checkpoint

    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"w": torch.ones(3)}, path)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"w": torch.zeros(3), "more": FailsToPickle()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_espnet_checkpoint_readers_refuse_crafted_files(fixes, crafted):
    import torch
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model
    from espnet2.train.reporter import Reporter
    from espnet2.train.trainer import Trainer

    from espnet_llm_plugin.espnet_fixes import UnsafeCheckpointError

    path, marker = crafted
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UnsafeCheckpointError, match=str(path)):  # --init_param
        load_pretrained_model(init_param=str(path), model=model, ignore_init_mismatch=False)
    with pytest.raises(UnsafeCheckpointError, match=str(path)):  # --resume
        Trainer.resume(checkpoint=path, model=model, reporter=Reporter(), optimizers=[], schedulers=[], scaler=None)
    assert not marker.exists()


def test_espnet_trainer_saves_atomically_and_torch_itself_is_untouched(fixes, tmp_path):
    import espnet2.main_funcs.average_nbest_models as averaging
    import espnet2.tasks.abs_task as abs_task
    import espnet2.train.trainer as trainer
    import torch

    for module in (trainer, averaging, abs_task):
        assert module.torch is not torch and module.torch.nn is torch.nn and module.torch.Tensor is torch.Tensor
    assert torch.load.__module__ == "torch.serialization" and torch.save.__module__ == "torch.serialization"
    path = tmp_path / "1epoch.pth"
    trainer.torch.save({"w": torch.ones(2)}, path)  # the call ESPnet's Trainer.run makes
    with pytest.raises(OSError):
        trainer.torch.save({"w": torch.zeros(2), "x": FailsToPickle()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1epoch.pth"]


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    from espnet_llm_plugin.espnet_fixes import CheckpointLoadError, load_checkpoint

    path = tmp_path / "model.pth"
    path.write_text("hello, not a model")
    with pytest.raises(CheckpointLoadError, match=rf"{path}: not a PyTorch checkpoint"):
        load_checkpoint(path)
