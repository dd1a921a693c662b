"""Tests for clue_fw.training.checkpoint: safetensors round trips and clear failures."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.errors import CheckpointError
from clue_fw.file_safety import atomic_write_json
from clue_fw.training.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_module_tensors,
    module_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)

CONTEXT = BuildContext(num_items=20, max_len=6)


def encoder(seed: int, dim: int = 16, blocks: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return TransformerSpec(dim=dim, heads=2, blocks=blocks, dropout=0.0).build(CONTEXT).eval()


def test_tensor_and_metadata_roundtrip(tmp_path: Path) -> None:
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).view(3, 4).t(),  # non-contiguous
        "b": torch.tensor([1, 2, 3], dtype=torch.long),
        "c": torch.tensor(3.5, dtype=torch.float64),
    }
    metadata = {"stage": "pretrain", "epoch": 3, "history": [{"loss": 0.5}], "nested": {"x": None}}
    path = tmp_path / "sub" / "ckpt.safetensors"
    save_checkpoint(path, tensors, metadata)
    loaded, meta = load_checkpoint(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert torch.equal(loaded[name], value) and loaded[name].dtype == value.dtype
    assert meta == {"format": FORMAT, **metadata}
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.safetensors"]  # no temp files left


def test_module_roundtrip(tmp_path: Path) -> None:
    source, target = encoder(0), encoder(1)
    items = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert not torch.allclose(source(items).user, target(items).user)
    path = tmp_path / "encoder.safetensors"
    save_checkpoint(path, module_tensors(source, "encoder."), {"kind": "encoder"})
    tensors, _ = load_checkpoint(path)
    assert all(name.startswith("encoder.") for name in tensors)
    load_module_tensors(target, tensors, "encoder.", path)
    for (name, a), (_, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(source(items).user, target(items).user)


def test_other_dim_lists_the_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "encoder.safetensors"
    save_checkpoint(path, module_tensors(encoder(0, dim=16), "encoder."), {})
    tensors, _ = load_checkpoint(path)
    model = encoder(0, dim=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_module_tensors(model, tensors, "encoder.", path)
    message = str(info.value)
    assert str(path) in message
    assert (
        "encoder.blocks.0.attention_norm.bias has shape (16,) in the checkpoint but (8,) in "
        "the model" in message
    )
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_and_unexpected_tensors(tmp_path: Path) -> None:
    path = tmp_path / "encoder.safetensors"
    save_checkpoint(path, module_tensors(encoder(0, blocks=2), "encoder."), {})
    tensors, _ = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"unexpected blocks\.1\."):
        load_module_tensors(encoder(0, blocks=1), tensors, "encoder.", path)
    with pytest.raises(CheckpointError, match=r"missing blocks\.1\."):
        small = {k: v for k, v in tensors.items() if ".blocks.1." not in k}
        load_module_tensors(encoder(0, blocks=2), small, "encoder.", path)
    with pytest.raises(CheckpointError, match="missing"):
        load_module_tensors(encoder(0), tensors, "model.", path)  # wrong prefix: nothing found


def test_dtype_mismatch(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    tensors = {f"m.{k}": v.double() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="m.bias has dtype torch.float64 in the checkpoint"):
        load_module_tensors(model, tensors, "m.", "x")


def valid_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "valid.safetensors"
    save_checkpoint(path, {"w": torch.randn(64, 64)}, {"epoch": 1})
    return path.read_bytes()


@pytest.mark.parametrize("cut", [0, 4, 8, 100, -1000, -1])
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    payload = valid_bytes(tmp_path)
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(payload[:cut])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path)


def test_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(CheckpointError, match="never loads pickle"):
        load_checkpoint(path)
    torch.save({"w": torch.ones(3)}, tmp_path / "torch.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "torch.pt")


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a clue_fw checkpoint"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(other), metadata={"clue_fw": json.dumps({"format": "x/9"})})
    with pytest.raises(CheckpointError, match="not a clue_fw checkpoint"):
        load_checkpoint(other)
    garbled = tmp_path / "garbled.safetensors"
    save_file({"w": torch.ones(2)}, str(garbled), metadata={"clue_fw": "{not json"})
    with pytest.raises(CheckpointError, match="not a clue_fw checkpoint"):
        load_checkpoint(garbled)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=generator)
        loss = (model(x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_optimizer_state_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    train_steps(model, optimizer, seed=1, steps=3)

    tensors, structure = optimizer_tensors(optimizer)
    tensors.update(module_tensors(model, "model."))
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, tensors, {"optimizer": structure})

    torch.manual_seed(5)
    copy_model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    # the recipe builds the optimiser: its hyper-parameters, not the file's, are kept
    copy_optimizer = torch.optim.Adam(
        copy_model.parameters(), lr=0.01, betas=(0.8, 0.95), weight_decay=0.1
    )
    meddled = torch.optim.Adam(copy_model.parameters(), lr=0.5)
    loaded, meta = load_checkpoint(path)
    restore_optimizer(meddled, loaded, meta["optimizer"])
    assert meddled.param_groups[0]["lr"] == 0.5 and meddled.param_groups[0]["betas"] == (0.9, 0.999)
    load_module_tensors(copy_model, loaded, "model.", path)
    restore_optimizer(copy_optimizer, loaded, meta["optimizer"])

    original_state = optimizer.state_dict()
    restored_state = copy_optimizer.state_dict()
    assert restored_state["param_groups"][0]["lr"] == 0.01
    assert tuple(restored_state["param_groups"][0]["betas"]) == (0.8, 0.95)
    assert set(restored_state["state"]) == set(original_state["state"])
    for index, values in original_state["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(restored_state["state"][index][name], values[name]), (index, name)
        assert restored_state["state"][index]["exp_avg"].abs().sum() > 0

    # continuing from the restored state follows the original exactly
    train_steps(model, optimizer, seed=2, steps=2)
    train_steps(copy_model, copy_optimizer, seed=2, steps=2)
    for a, b in zip(model.parameters(), copy_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_state_of_another_model_is_refused(tmp_path: Path) -> None:
    model = nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    train_steps(model, optimizer, seed=0, steps=1)
    tensors, structure = optimizer_tensors(optimizer)
    bigger = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="Optimiser state"):
        restore_optimizer(torch.optim.Adam(bigger.parameters()), tensors, structure)


def test_atomic_write_json(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.json"
    atomic_write_json(path, {"valid": {"ndcg@10": 0.5}})
    atomic_write_json(path, {"valid": {"ndcg@10": 0.25}})
    assert json.loads(path.read_text()) == {"valid": {"ndcg@10": 0.25}}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_safetensors_header_length_that_looks_like_a_pickle_opcode(tmp_path: Path) -> None:
    # A header of 0x0380 bytes starts the file with 80 03, pickle protocol 3's opcode.
    path = tmp_path / "model.safetensors"
    for pad in range(1500):
        save_checkpoint(path, {"w": torch.zeros(2)}, {"note": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x03":
            break
    else:
        pytest.skip("no metadata size gives a 0x0380-byte header here")
    tensors, metadata = load_checkpoint(path)
    assert torch.equal(tensors["w"], torch.zeros(2)) and metadata["note"] == "x" * pad
