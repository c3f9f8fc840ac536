import pytest
import torch

from espnet_llm_plugin.core.device import DeviceError, resolve_device


def test_auto_follows_the_hardware():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


def test_explicit_cpu_and_malformed_names():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "CPU", ""):
        with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_an_error_not_a_cpu_run():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=f"--device {name}: no CUDA device"):
            resolve_device(name)


@pytest.mark.gpu
def test_cuda_index_beyond_the_machine_is_named():
    n = torch.cuda.device_count()
    assert resolve_device("cuda:0").type == "cuda"
    with pytest.raises(DeviceError, match=f"cuda:{n}: only {n}"):
        resolve_device(f"cuda:{n}")
