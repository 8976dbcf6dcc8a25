"""Jobs share the engine thread, so a suspended job must not leave thread-wide torch state behind."""

import torch

from robustlens.engine.jobs import CancelToken
from robustlens.engine.smoothing import Smooth, certify_job


def test_a_suspended_certify_job_leaves_gradients_available(zoo_model, fmnist_test):
    smooth = Smooth(zoo_model("fashion-mnist/noise-0.25"), 10, 0.25)
    job = iter(certify_job(smooth, fmnist_test.images[:1], n0=50, n=400, alpha=0.001, batch_size=100)(CancelToken()))
    next(job), next(job)  # suspended between two chunks
    assert not torch.is_inference_mode_enabled()
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(zoo_model("fashion-mnist/standard")(x).sum(), x)  # another job's PGD step
    assert grad.shape == x.shape
    for _ in job:
        pass
