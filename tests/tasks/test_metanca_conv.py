"""MetaNCA on convolutional task networks: the same task, pools and core rollout grow CNNs."""

import json

import pytest
import torch

from localrules.core.convgraph import ConvNet
from localrules.data.tabular import load_split
from localrules.tasks import metanca as mn
from localrules.train.loop import TrainConfig, train
from tests.tasks.stepping import assert_grow_is_stepping


def test_tiny_meta_training_of_a_cnn_on_digits_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg = mn.Config(dataset="digits", archs=("conv:2",), hidden=3, pos_dim=6, rule_hidden=(16,), samples=4,
                    pool_size=8, data_batch=64)
    task = mn.MetaNCATask(cfg, load_split("digits"), torch.device("cpu"))
    assert isinstance(task.topos["conv:2"], ConvNet)
    tcfg = TrainConfig(iterations=120, steps_min=3, steps_max=5, lr=1e-2, lr_milestones=(), log_every=1,
                       checkpoint_every=1000)
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    first = sum(r["loss"] for r in rows[:10]) / 10
    last = sum(r["loss"] for r in rows[-10:]) / 10
    assert last < 0.9 * first, (first, last)


def test_cnns_and_mlps_meta_train_together_and_resume(tmp_path):
    torch.manual_seed(0)
    cfg = mn.Config(dataset="digits", archs=("conv:2,res", (64, 6, 10)), hidden=3, pos_dim=6, rule_hidden=(16,),
                    samples=4, pool_size=8, data_batch=32)
    task = mn.MetaNCATask(cfg, load_split("digits"), torch.device("cpu"))
    tcfg = TrainConfig(iterations=4, steps_min=2, steps_max=3, lr_milestones=(), checkpoint_every=1000)
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    assert set(task.extra_state()["pools"]) == {"conv:2,res", "64,6,10"}
    _, loaded, _ = mn.load(tmp_path / "model.safetensors")
    assert loaded == cfg  # the conv architecture string survives the checkpoint
    again = mn.MetaNCATask(cfg, load_split("digits"), torch.device("cpu"))
    train(again, TrainConfig(iterations=5, steps_min=2, steps_max=3, lr_milestones=(), checkpoint_every=1000),
          tmp_path, torch.device("cpu"), resume=True, progress=False)
    for a in cfg.archs:  # the pools came back; the resumed iteration moved them on
        assert again.pools[a].slots["state"].shape == task.pools[a].slots["state"].shape


def test_grow_of_a_cnn_is_the_core_rollout_and_its_forward():
    torch.manual_seed(1)
    cfg = mn.Config(dataset="digits", archs=("conv:3",), hidden=2, pos_dim=3, rule_hidden=(8,))
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    topo = mn.task_topology("conv:3", cfg, 64, 10)
    state = mn.init_networks(topo, 2, cfg)
    grown = assert_grow_is_stepping(rule, topo, state, 3, grow_topo=mn.coded(topo, cfg, None), seed=2)
    x = load_split("digits").x_test[:7]
    assert mn.task_forward(topo, grown, x, cfg.activation).shape == (2, 7, 10)


def test_conv_initialisation_is_scaled_by_the_kernel_fan_in():
    cfg = mn.Config(dataset="mnist", archs=("conv:8,16",))
    topo = mn.task_topology("conv:8,16", cfg, 784, 10)
    w = topo.split(mn.init_networks(topo, 64, cfg)[..., :1])
    assert w[1].std().item() == pytest.approx((8 * 9) ** -0.5, rel=0.05)  # 16 x (8 x 3 x 3 + 1)
    assert w[2].std().item() == pytest.approx((16 * 49) ** -0.5, rel=0.05)  # head: 16 channels x 7 x 7


@pytest.mark.parametrize("cfg, match", [
    (dict(archs=("conv:8,x",)), "conv"),
    (dict(archs=("conv:8",), data_conditioned=True), "dense layers only"),
    (dict(archs=("conv:8",), arch_range=(5, 10)), "arch_range"),
])
def test_bad_conv_configs_get_a_clear_error(cfg, match):
    with pytest.raises(ValueError, match=match):
        mn.Config(dataset="mnist", **cfg).validate()


def test_a_cnn_needs_square_images():
    with pytest.raises(ValueError, match="square"):
        mn.MetaNCATask(mn.Config(dataset="wine", archs=("conv:4",)), load_split("wine"), torch.device("cpu"))
