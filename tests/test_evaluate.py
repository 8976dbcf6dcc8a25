"""Robust accuracy under a strong attack: APGD-CE then APGD-T (torchattacks) never reports more robust
images than our PGD-20 on the same images, and stays inside the threat model."""

import json

import pytest
import torch

from robustlens.engine.cli import main
from robustlens.engine.evaluate import accuracy, evaluate_robustness, pgd_robust_mask, strong_robust_mask


def test_evaluate_apgd_is_at_most_pgd_on_the_same_images(capsys, zoo_model, fmnist_test):
    torch.set_num_threads(1)
    assert main(["evaluate", "--model", "fashion-mnist/l2-robust", "--norm", "l2", "--eps", "1.5",
                 "--attack", "apgd", "--max", "12", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["attack"] == "apgd" and result["images"] == 12 and result["pgd"]["steps"] == 20
    robust = result["robust_accuracy"]
    assert robust["apgd"]["1.5"] <= robust["pgd"]["1.5"]
    assert robust["worst"]["1.5"] <= min(robust["apgd"]["1.5"], robust["pgd"]["1.5"])
    model = zoo_model("fashion-mnist/l2-robust")
    subset = fmnist_test.subset(range(12))
    clean = accuracy(model, subset.images, subset.labels)
    assert robust["pgd"]["1.5"] <= clean  # an attack only removes correct images
    assert abs(result["clean_accuracy"] - accuracy(model, fmnist_test.images, fmnist_test.labels)) < 1e-9


def test_the_strong_attack_breaks_what_it_reports_and_nothing_at_eps_zero(zoo_model, fmnist_test):
    torch.set_num_threads(1)
    model = zoo_model("fashion-mnist/standard")
    subset = fmnist_test.subset(range(8))
    correct = accuracy(model, subset.images, subset.labels)
    table = evaluate_robustness(model, subset.images, subset.labels, norm="linf", eps_values=[0.0], attack="apgd")
    assert table["apgd"][0.0] == pytest.approx(correct) and table["pgd"][0.0] == pytest.approx(correct)
    # the standard model at L∞ 0.1: PGD leaves it at 0.2 % on 1000 images; APGD must break the same or more
    strong = strong_robust_mask(model, subset.images, subset.labels, attack="apgd", norm="linf", eps=0.1,
                                num_classes=10)
    weak = pgd_robust_mask(model, subset.images, subset.labels, norm="linf", eps=0.1)
    assert strong.sum() <= weak.sum() and strong.sum() == 0
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate_robustness(model, subset.images, subset.labels, norm="l2", eps_values=[1.0], attack="cw")
