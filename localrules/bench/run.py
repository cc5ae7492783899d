"""``localrules bench``: our engines against the dense references, same weights and inputs.

Each benchmark first checks that both paths agree (same random update masks and noise), then
times training (forward + backward through the rollout) and evaluation (inference only), and
reports cell-steps per second (dense-equivalent: every grid cell or weight counts), counted
FLOPs per second, and the ratios ``train_speedup`` and ``eval_speedup`` (reference time /
engine time).

With ``modes`` the engine is timed again as each variant: its steps compiled (``compiled`` rows;
on CUDA also recorded as CUDA graphs, ``graph`` rows: :mod:`localrules.train.accelerate`) and
for the restorer its convolution in NCHW layout (``nchw`` rows: :mod:`localrules.core.layout`),
each checked against the eager engine first (``agreement_compiled``, ...); their GFLOP/s count
the eager engine's FLOPs (the same arithmetic), and ``compiled_train_speedup`` /
``compiled_eval_speedup`` (``graph_...``, ``nchw_...``) are eager engine time / that variant's.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from localrules.bench import reference as ref
from localrules.progress import bar as progress_bar

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve")


def machine(device: torch.device) -> dict:
    info = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": str(device), "cpu": platform.machine(), "cpu_flags": []}
    try:
        text = open("/proc/cpuinfo").read()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith(("flags", "Features"))), [])
        info["cpu"] = names[0] if names else info["cpu"]
        info["cpu_flags"] = [f for f in FLAGS if f in flags]
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _time(fn, repeats: int, device) -> float:
    """Best-of-``repeats`` wall time of fn() in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in progress_bar(range(repeats), desc="timing", leave=False):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.contextmanager
def float32_exact():
    """Turn CUDA's TF32 matmuls and convolutions off (both are on by default for convolutions):
    the agreement checks compare two paths within float32 tolerances, the timings do not."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as c:
        fn()
    return int(c.get_total_flops())


def _row(seconds: float, cell_steps: int, flops: int) -> dict:
    return {"seconds": seconds, "cell_steps_per_s": cell_steps / seconds, "gflop_per_s": flops / seconds / 1e9,
            "flops": flops}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / (b.norm() + 1e-12)).item()


def accelerated_modes(device, system: str = "") -> tuple[str, ...]:
    """The variants of the engine the bench measures on ``device``: compiled, on CUDA also
    graph-captured, and for the restorer the NCHW layout (its engine row is channels-last)."""
    return (("nchw",) if system == "restore" else ()) + (("compiled", "graph") if device.type == "cuda" else ("compiled",))


def _apply(mode: str, model, device) -> None:
    """Turn ``model`` into the engine variant ``mode`` (undone by eager + use_layout channels-last)."""
    from localrules.core.layout import use_layout
    from localrules.train.accelerate import compile_model

    if mode == "nchw":
        use_layout(model, "nchw")
    else:
        compile_model(model, device, graphs=mode == "graph")


def _marked(fn):
    """fn, each call a new step of the CUDA graphs (:func:`localrules.train.accelerate.mark_step`)."""
    from localrules.train.accelerate import mark_step

    def run():
        mark_step()
        return fn()
    return run


def _accelerated(res: dict, model, device, check, train_fn, eval_fn, cells: int, ecells: int, repeats: int,
                 modes, report=None) -> dict:
    """Add each mode's rows to ``res`` (:func:`accelerated_modes`): ``check()`` -> (loss, output,
    grads) of one training step on fixed inputs, run by the eager engine and by the variant, must
    agree; then ``train_fn`` and ``eval_fn`` are timed with it. A mode that fails to compile is
    reported, not raised."""
    from localrules.core.layout import use_layout
    from localrules.train.accelerate import eager

    with float32_exact():
        base = check()
    for mode in modes:
        if report:
            report(res)
        run = _marked if mode == "graph" else (lambda f: f)
        try:
            _apply(mode, model, device)
            with float32_exact():
                got = run(check)()
            agree = {"max_output_diff": (got[1] - base[1]).abs().max().item(),
                     "loss_diff": (got[0] - base[0]).abs().item(),
                     "max_grad_rel_diff": max(_rel(a, b) for a, b in zip(got[2], base[2]))}
            agree["ok"] = (agree["max_output_diff"] < 1e-4 and agree["loss_diff"] < 1e-4
                           and agree["max_grad_rel_diff"] < 1e-3)
            res[f"agreement_{mode}"] = agree
            res["train"][mode] = _row(_time(run(train_fn), repeats, device), cells, res["train"]["engine"]["flops"])
            res["eval"][mode] = _row(_time(run(eval_fn), repeats, device), ecells, res["eval"]["engine"]["flops"])
            for phase in ("train", "eval"):
                res[f"{mode}_{phase}_speedup"] = res[phase]["engine"]["seconds"] / res[phase][mode]["seconds"]
        except Exception as e:  # noqa: BLE001 - a compiler error is a finding of the bench
            res[f"agreement_{mode}"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        finally:
            use_layout(eager(model), "channels-last")
    return res


def bench_selfclassify(pixels: torch.Tensor, device, batch: int = 16, steps: int = 20,
                       eval_digits: int = 200, eval_steps: int = 50, eval_batch: int = 50,
                       repeats: int = 3, seed: int = 0, modes: tuple[str, ...] = (), report=None) -> dict:
    """pixels (N, 28, 28) in [0, 1]: real digits (their alive cells decide the work saved)."""
    from localrules.tasks import mnist_selfclassify as ms

    torch.manual_seed(seed)
    model = ms.build_model(ms.Config()).to(device)
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.05)  # non-trivial updates
    C = model.rule.mlp[-1].out_features
    px = pixels[:batch].to(device)[..., None]
    H, W = px.shape[1:3]
    labels = torch.randint(10, (batch,), device=device)
    fires = torch.rand(steps, batch, H, W, 1, device=device) <= 0.5
    noises = torch.randn(steps, batch, H, W, C, device=device)

    def engine(run_backward=True, px=px, fires=fires, noises=noises, noise_std=0.02):
        eng = ms.Engine("alive", px, torch.zeros(*px.shape[:3], C, device=device))
        s = eng.pack(torch.zeros(*px.shape[:3], C, device=device))
        s = model.rollout(eng.topology, eng.fixed, s, eng.alive, len(fires), noise_std,
                          torch.stack([eng.pack(f) for f in fires]), torch.stack([eng.pack(n) for n in noises]))
        if run_backward:
            tgt = labels[eng.alive_digit()]
            loss = ms.loss_fn("l2", ms.labels_of(s), tgt, len(px))
            model.zero_grad()
            loss.backward()
            return loss.detach(), eng.unpack(s.detach())
        return None, eng.unpack(s)

    def dense(run_backward=True, px=px, fires=fires, noises=noises, noise_std=0.02):
        x = torch.cat([px, torch.zeros(*px.shape[:3], C, device=device)], -1).permute(0, 3, 1, 2)
        for t in range(len(fires)):
            x = ref.selfclassify_step(model, x, fires[t].permute(0, 3, 1, 2), noise_std,
                                      noises[t].permute(0, 3, 1, 2))
        s = x[:, 1:].permute(0, 2, 3, 1)
        if run_backward:
            onehot = F.one_hot(labels, 10)[:, None, None].to(s) * (px > 0.1)
            loss = ((s[..., -10:] - onehot) ** 2).sum() / 2 / len(px)
            model.zero_grad()
            loss.backward()
            return loss.detach(), s.detach()
        return None, s

    with float32_exact():
        l_e, s_e = engine()
        g_e = [p.grad.clone() for p in model.parameters()]
        l_d, s_d = dense()
        g_d = [p.grad.clone() for p in model.parameters()]
    agree = {"max_state_diff": (s_e - s_d).abs().max().item(), "loss_diff": (l_e - l_d).abs().item(),
             "max_grad_rel_diff": max(_rel(a, b) for a, b in zip(g_e, g_d))}
    agree["ok"] = agree["max_state_diff"] < 1e-3 and agree["max_grad_rel_diff"] < 1e-3

    cells = batch * H * W * steps
    train = {"engine": _row(_time(engine, repeats, device), cells, _flops(engine)),
             "reference": _row(_time(dense, repeats, device), cells, _flops(dense))}

    epx = pixels[:eval_digits].to(device)[..., None]
    ef = torch.rand(eval_steps, eval_batch, H, W, 1, device=device) <= 0.5
    en = torch.zeros(eval_steps, eval_batch, H, W, C, device=device)

    def evaluate(path):
        def run():
            with torch.inference_mode():
                for lo in range(0, len(epx), eval_batch):
                    b = epx[lo : lo + eval_batch]
                    path(False, b, ef[:, : len(b)], en[:, : len(b)], 0.0)
        return run

    ecells = len(epx) * H * W * eval_steps
    evals = {"engine": _row(_time(evaluate(engine), repeats, device), ecells, _flops(evaluate(engine))),
             "reference": _row(_time(evaluate(dense), repeats, device), ecells, _flops(evaluate(dense)))}
    alive_frac = (pixels > 0.1).float().mean().item()
    res = {
        "system": "mnist-selfclassify", "agreement": agree,
        "train_speedup": train["reference"]["seconds"] / train["engine"]["seconds"],
        "eval_speedup": evals["reference"]["seconds"] / evals["engine"]["seconds"],
        "train": train, "eval": evals, "alive_fraction": alive_frac,
        "settings": {"batch": batch, "steps": steps, "eval_digits": len(epx), "eval_steps": eval_steps,
                     "eval_batch": eval_batch, "repeats": repeats},
        "machine": machine(device),
    }

    def check():
        loss, s = engine()
        return loss, s, [p.grad.clone() for p in model.parameters()]

    return _accelerated(res, model, device, check, engine, evaluate(engine), cells, ecells, repeats, modes, report)


def bench_metanca(device, sizes=(784, 50, 30, 10), samples: int = 8, steps: int = 10,
                  data_batch: int = 256, repeats: int = 3, seed: int = 0, modes: tuple[str, ...] = (), report=None) -> dict:
    """Batched DenseLayers growth of ``samples`` networks vs a per-network, per-layer loop; they
    must agree on the final states, the loss and the rule's gradients."""
    from localrules.core.weightgraph import DenseLayers
    from localrules.tasks import metanca as mn

    torch.manual_seed(seed)
    cfg = mn.Config()
    rule = mn.build_rule(cfg).to(device)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.05)
    topo = DenseLayers(sizes)
    state0 = mn.init_networks(topo, samples, cfg, device)
    fires = torch.rand(steps, samples, topo.n_cells, 1, device=device) <= cfg.fire_rate
    x = torch.randn(data_batch, sizes[0], device=device)
    y = torch.randint(sizes[-1], (data_batch,), device=device)

    def engine(run_backward=True):
        s = rule.rollout(topo, None, state0, None, steps, fires=fires)  # the meta-training update
        loss = None
        if run_backward:
            loss = F.cross_entropy(mn.task_forward(topo, s, x, "relu").flatten(0, 1), y.repeat(samples))
            rule.zero_grad()
            loss.backward()
        return loss, s.detach()

    codes = [m[0] for m in topo.split(topo.cell_code(rule.rule.code_dim, device)[None])]

    def loop(run_backward=True):
        finals, loss = [], 0.0
        for k in range(samples):
            layers = [m[0] for m in topo.split(state0[k : k + 1])]
            for t in range(steps):
                layers = ref.metanca_step(rule, layers, [f[0] for f in topo.split(fires[t, k : k + 1].float())],
                                          codes)
            h = x
            for l, m in enumerate(layers):
                h = h @ m[:, :-1, 0].T + m[:, -1, 0]
                h = torch.relu(h) if l + 1 < len(layers) else h
            loss = loss + F.cross_entropy(h, y) / samples
            finals.append(torch.cat([m.reshape(-1, m.shape[-1]) for m in layers]))
        if run_backward:
            rule.zero_grad()
            loss.backward()
        return loss, torch.stack(finals).detach()

    grads = lambda: [p.grad.clone() for p in rule.parameters() if p.grad is not None]  # noqa: E731
    with float32_exact():
        (l_e, s_e), g_e = engine(), grads()
        (l_r, s_r), g_r = loop(), grads()
    agree = {"max_state_diff": (s_e - s_r).abs().max().item(), "loss_diff": (l_e - l_r).abs().item(),
             "max_grad_rel_diff": max(_rel(a, b) for a, b in zip(g_e, g_r))}
    agree["ok"] = (agree["max_state_diff"] < 1e-4 and agree["loss_diff"] < 1e-4 and len(g_e) == len(g_r)
                   and agree["max_grad_rel_diff"] < 1e-3)
    cells = samples * topo.n_cells * steps
    train = {"engine": _row(_time(engine, repeats, device), cells, _flops(engine)),
             "reference": _row(_time(loop, repeats, device), cells, _flops(loop))}

    def no_grad(fn):
        def run():
            with torch.inference_mode():
                fn(False)
        return run

    from localrules.studies.metanca_studies import networks_per_chunk

    chunk = networks_per_chunk(topo.n_cells, device)

    def grow():  # how the studies grow networks: in cache-sized chunks
        with torch.inference_mode():
            for lo in range(0, samples, chunk):
                rule.rollout(topo, None, state0[lo : lo + chunk], None, steps, fires=fires[:, lo : lo + chunk])

    evals = {"engine": _row(_time(grow, repeats, device), cells, _flops(grow)),
             "reference": _row(_time(no_grad(loop), repeats, device), cells, _flops(no_grad(loop)))}
    res = {
        "system": "metanca", "agreement": agree,
        "train_speedup": train["reference"]["seconds"] / train["engine"]["seconds"],
        "eval_speedup": evals["reference"]["seconds"] / evals["engine"]["seconds"],
        "train": train, "eval": evals,
        "settings": {"sizes": list(sizes), "samples": samples, "steps": steps, "data_batch": data_batch,
                     "repeats": repeats, "eval_chunk": chunk},
        "machine": machine(device),
    }

    def check():
        loss, s = engine()
        return loss, s, grads()

    return _accelerated(res, rule, device, check, engine, grow, cells, cells, repeats, modes, report)


def bench_restore(images: torch.Tensor, device, batch: int = 64, eval_digits: int = 1000,
                  eval_batch: int = 100, repeats: int = 3, seed: int = 0, modes: tuple[str, ...] = (), report=None) -> dict:
    """The hybrid restorer (our channels-last CA engine) against the NCHW reference, in eval mode
    (no dropout or state noise, so both compute the same function); images (N, 28, 28) in [0, 1]."""
    from localrules.tasks import restore as rs
    from localrules.train.perturb import mask_pixels

    torch.manual_seed(seed)
    model = rs.build_model(rs.Config(model="hybrid")).to(device).eval()
    torch.nn.init.normal_(model.ca.rule.mlp[-1].weight, std=0.05)
    masked, _ = mask_pixels(images[: max(batch, eval_digits)], 0.7, torch.Generator().manual_seed(seed))
    masked = masked.to(device)
    clean = images[: len(masked)].to(device)
    xb, yb = masked[:batch], clean[:batch]

    def train_step(path):
        def run():
            loss = F.mse_loss(path(xb), yb)
            model.zero_grad()
            loss.backward()
            return loss.detach()
        return run

    def eval_pass(path):
        def run():
            with torch.inference_mode():
                return torch.cat([path(masked[i : i + eval_batch]) for i in range(0, eval_digits, eval_batch)])
        return run

    engine = model.forward
    reference = lambda x: ref.restore_hybrid(model, x)  # noqa: E731
    with float32_exact():
        l_e = train_step(engine)()
        g_e = [p.grad.clone() for p in model.parameters()]
        l_r = train_step(reference)()
        g_r = [p.grad.clone() for p in model.parameters()]
        out_diff = (eval_pass(engine)() - eval_pass(reference)()).abs().max().item()
    agree = {"max_output_diff": out_diff, "loss_diff": (l_e - l_r).abs().item(),
             "max_grad_rel_diff": max(_rel(a, b) for a, b in zip(g_e, g_r))}
    agree["ok"] = agree["max_output_diff"] < 1e-4 and agree["max_grad_rel_diff"] < 1e-3
    L, steps = model.cfg.lattice, model.cfg.steps
    cells, ecells = batch * L * L * steps, eval_digits * L * L * steps
    train = {name: _row(_time(train_step(p), repeats, device), cells, _flops(train_step(p)))
             for name, p in (("engine", engine), ("reference", reference))}
    evals = {name: _row(_time(eval_pass(p), repeats, device), ecells, _flops(eval_pass(p)))
             for name, p in (("engine", engine), ("reference", reference))}
    res = {
        "system": "restore", "agreement": agree,
        "train_speedup": train["reference"]["seconds"] / train["engine"]["seconds"],
        "eval_speedup": evals["reference"]["seconds"] / evals["engine"]["seconds"],
        "train": train, "eval": evals,
        "settings": {"model": "hybrid", "batch": batch, "eval_digits": eval_digits, "eval_batch": eval_batch,
                     "repeats": repeats},
        "machine": machine(device),
    }

    def check():
        loss = train_step(engine)()
        return loss, eval_pass(engine)(), [p.grad.clone() for p in model.parameters()]

    return _accelerated(res, model, device, check, train_step(engine), eval_pass(engine), cells, ecells, repeats,
                        modes, report)
