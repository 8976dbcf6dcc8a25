import torch

from robustlens.engine.data import load_fashion_mnist
from robustlens.engine.models import load_checkpoint
from robustlens.engine.train import TrainConfig, train


def small_train_set():
    return load_fashion_mnist("train", builtin_only=True).subset(range(0, 12_000, 6))  # 2,000 images


def test_short_training_reduces_the_loss_and_saves_a_checkpoint(tmp_path):
    out = tmp_path / "m.pt"
    result = train(TrainConfig(mode="noise", sigma=0.25, epochs=2, batch_size=100, lr=3e-3), small_train_set(),
                   out, progress=False)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < first and last < 1.5
    model = load_checkpoint(out, device="cpu")
    assert model.meta.kind == "noise" and model.meta.sigma == 0.25
    assert not (tmp_path / "m.pt.state").exists()


def test_training_resumes_from_its_epoch_checkpoint(tmp_path):
    data = small_train_set()
    config = TrainConfig(mode="adversarial", norm="linf", eps=0.1, steps=2, epochs=2, batch_size=200)
    straight = train(config, data, tmp_path / "a.pt", progress=False, max_batches=3)
    # interrupt after epoch 1 by training a 2-epoch config for one epoch only: simulate with the state file
    out = tmp_path / "b.pt"
    import robustlens.engine.train as train_module

    original = train_module.tqdm
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch starts: stop as a crash would
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    train_module.tqdm = interrupting
    try:
        try:
            train(config, data, out, progress=False, max_batches=3)
        except KeyboardInterrupt:
            pass
    finally:
        train_module.tqdm = original
    assert (tmp_path / "b.pt.state").exists() and not out.exists()
    resumed = train(config, data, out, progress=False, max_batches=3)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)
