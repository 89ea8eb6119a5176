"""One device selection: auto, cpu, and clear refusals of devices torch cannot use."""

from __future__ import annotations

import pytest
import torch

from mrzero.core.device import DeviceError, select_device


@pytest.mark.parametrize("requested", [None, "auto", "AUTO"])
def test_auto_is_cuda_when_present_else_cpu(requested):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device(requested).type == expected


def test_cpu_is_taken_as_asked():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:3"])
def test_unavailable_cuda_fails_saying_what_torch_sees(requested):
    with pytest.raises(DeviceError, match=rf"device '{requested}' asked for, but torch sees no CUDA device"):
        select_device(requested)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_index_past_the_last_device_fails():
    n = torch.cuda.device_count()
    assert select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=f"torch sees {n} CUDA device"):
        select_device(f"cuda:{n}")


@pytest.mark.parametrize("requested", ["tpu", "gpu", "cuda:x", ""])
def test_malformed_names_are_refused(requested):
    with pytest.raises(DeviceError, match="is not a torch device|use auto, cpu"):
        select_device(requested)


def test_an_error_names_where_the_request_came_from():
    with pytest.raises(DeviceError, match=r"device 'tpu' \(--device / MRZERO_DEVICE\) is not a torch device"):
        select_device("tpu", source="--device / MRZERO_DEVICE")
