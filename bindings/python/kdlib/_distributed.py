"""Data-parallel batch losses (CLASS_BALANCE, MCC) over any all-reduce engine.

The C split API (include/kdlib/loss.h, docs/distributed.md) is
kd_loss_local_stats -> the caller's all-reduce (SUM) -> kd_loss_finish.  Its
ctypes prototypes (argtypes/restype) are declared with every other function in
_lib.PROTOTYPES and wrapped one to one by Loss.stats_size / local_stats /
finish; this module runs the three steps for one batch shard:

    # NumPy + mpi4py
    r = kdlib.split_batch_loss("mcc", shard_logits,
                               lambda s: comm.Allreduce(MPI.IN_PLACE, s, op=MPI.SUM))
    r.loss            # the global batch's loss (the same on every rank)
    r.grad_student    # this shard's rows of d loss / d logits (global loss)

    # PyTorch + torch.distributed (any backend; NCCL gets a tensor on the GPU)
    loss = kdlib.torch_split_batch_loss("class_balance", shard_logits)
    (kd_loss + lam * loss).backward()

The statistics are float64 and must be SUMMED over ranks (never averaged).
The gradient rows are rows of the GLOBAL loss's gradient: the parameter
gradient of the global batch is the SUM over ranks.  DistributedDataParallel
AVERAGES gradients, so torch_split_batch_loss multiplies its gradient by the
world size by default (grad_scale).
"""
import numpy as np

from . import _arrays as A
from ._losses import (Loss, LossResult, CLASS_BALANCE, MCC, ARG_STUDENT, ARG_GRAD_STUDENT,
                      PARAM_TEMPERATURE, PARAM_INPUT_TYPE, PARAM_THREADS, INPUT_LOGITS,
                      INPUT_PROBABILITIES)

_KINDS = {"mcc": MCC, "class_balance": CLASS_BALANCE}
_INPUTS = {"logits": INPUT_LOGITS, "probabilities": INPUT_PROBABILITIES,
           "probs": INPUT_PROBABILITIES}


def _kind(kind):
    if isinstance(kind, str) and kind.lower() in _KINDS:
        return _KINDS[kind.lower()]
    if kind in (MCC, CLASS_BALANCE):
        return int(kind)
    raise ValueError("kind must be 'mcc' or 'class_balance' (or kdlib's MCC / CLASS_BALANCE), "
                     "got %r" % (kind,))


def split_batch_loss(kind, student, all_reduce, *, temperature=2.5, inputs="logits",
                     compute_grad=True, threads=1):
    """One rank's share of a batch loss split over ranks.

    kind        'mcc' or 'class_balance'.
    student     this rank's n x C float32 rows (logits; for class_balance also
                probabilities with inputs='probabilities'); n may be 0.
    all_reduce  callable receiving this rank's float64 statistics (a 1-D
                ndarray of stats_size values) and returning the SUM over
                ranks, or None after summing in place.
    temperature MCC's temperature (tllib default 2.5); ignored by class balance.
    Returns LossResult(loss=float, grad_student=n x C float32 or None,
    global_stats=the summed statistics).
    """
    k = _kind(kind)
    if inputs not in _INPUTS:
        raise ValueError("inputs must be one of %s, got %r" % (", ".join(_INPUTS), inputs))
    x, _ = A.matrix(student, "student")
    n, c = x.shape
    with Loss(k, c) as h:
        h.set_int(PARAM_THREADS, threads)
        if k == MCC:
            h.set(PARAM_TEMPERATURE, temperature)
        else:
            h.set_int(PARAM_INPUT_TYPE, _INPUTS[inputs])
        h.bind_matrix(ARG_STUDENT, x, "student")
        grad = None
        if compute_grad:
            grad = np.zeros((n, c), np.float32)
            h.bind_output(ARG_GRAD_STUDENT, grad, "grad_student")
        stats = h.local_stats(n)
        summed = all_reduce(stats)
        if summed is not None:
            stats = np.asarray(summed, np.float64)
        loss = h.finish(n, stats)
    return LossResult(loss=loss, grad_student=grad, global_stats=stats)


def torch_split_batch_loss(kind, logits, *, group=None, grad_scale=None, temperature=2.5,
                           inputs="logits"):
    """torch.distributed version of split_batch_loss, differentiable.

    logits      this rank's n x C float tensor (CPU or GPU; computed on the CPU).
    group       the torch.distributed process group (None: the default one).
    grad_scale  factor of the gradient rows; None = the group's world size,
                right for DistributedDataParallel, which averages gradients
                over ranks; pass 1.0 when your gradients are summed.
    Returns a 0-d tensor, the global batch's loss, on logits' device.
    """
    import torch
    import torch.distributed as dist

    k = _kind(kind)
    from .torch import _not_tracing
    _not_tracing()
    if grad_scale is None:
        grad_scale = float(dist.get_world_size(group)) if dist.is_initialized() else 1.0

    def all_reduce(stats):
        device = logits.device
        if dist.is_initialized() and dist.get_backend(group) == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        t = torch.from_numpy(stats).to(device)
        if dist.is_initialized():
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t.cpu().numpy()

    class _Split(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            a = z.detach().to("cpu", torch.float32).contiguous().numpy()
            r = split_batch_loss(k, a, all_reduce, temperature=temperature, inputs=inputs,
                                 compute_grad=z.requires_grad)
            if r.grad_student is not None:
                ctx.save_for_backward(torch.from_numpy(r.grad_student * np.float32(grad_scale)))
            return torch.tensor(r.loss, dtype=z.dtype, device=z.device)

        @staticmethod
        def backward(ctx, grad_output):
            (g,) = ctx.saved_tensors
            return (g.to(grad_output.device, grad_output.dtype) * grad_output,)

    return _Split.apply(logits)


# ---------------------------------------------------------------- threshold states
#
# The threshold algorithms (kdlib.Thresholds) keep EMA statistics of the batch
# (FreeMatch: tau_t from the mean or a quantile of the max confidences, p_t,
# the label histogram; SoftMatch: p_model, mu, var) or per-sample state
# (FlexMatch).  The C API updates a state from rows and has no split
# statistics, and a quantile is no sum; so every rank gathers the global
# batch's rows in rank order and updates its replica with the whole batch:
# each replica is then bit-identical to one process updated with the
# concatenated batch.  The cost is n x C float32 per rank and step.

def _comm_device(t, group):
    import torch
    import torch.distributed as dist
    if dist.get_backend(group) == "nccl" and t.device.type != "cuda":
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t


def torch_all_gather_rows(x, group=None):
    """The rows of every rank concatenated in rank order (shards may differ in
    length, 0 allowed; the trailing dimensions must agree).  Without an
    initialised process group: x itself.  Returns a CPU tensor."""
    import torch
    import torch.distributed as dist
    x = x.detach()
    if not (dist.is_available() and dist.is_initialized()):
        return x.cpu()
    world = dist.get_world_size(group)
    n = _comm_device(torch.tensor([x.shape[0]], dtype=torch.int64), group)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n, group=group)
    sizes = [int(s.item()) for s in sizes]
    pad = torch.zeros((max(sizes),) + tuple(x.shape[1:]), dtype=x.dtype)
    pad[:x.shape[0]] = x.cpu()
    pad = _comm_device(pad, group)
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad, group=group)
    return torch.cat([p[:s].cpu() for p, s in zip(parts, sizes)])


def torch_threshold_update(thresholds, probs, indices=None, group=None):
    """Data-parallel kdlib.Thresholds.update_probs: gathers every rank's
    probability rows (and sample indices, required by FlexMatch) in rank
    order and updates this rank's replica with the global batch, so that
    every replica holds the state of one process updated with the whole
    batch.  probs: this rank's n x C rows (torch tensor, any float dtype,
    computed as float32); indices: n integers or None (on every rank)."""
    import torch
    p = torch_all_gather_rows(probs.detach().to(torch.float32).reshape(-1, thresholds.num_classes),
                              group)
    idx = None
    if indices is not None:
        idx = torch_all_gather_rows(torch.as_tensor(indices).reshape(-1).to(torch.int64), group)
        idx = idx.numpy()
    thresholds.update_probs(p.contiguous().numpy(), idx)


def torch_threshold_update_labeled(thresholds, probs, group=None):
    """Data-parallel kdlib.Thresholds.update_labeled_probs (AdaMatch): the
    labelled rows of every rank, gathered in rank order, update this rank's
    replica, as torch_threshold_update does for the unlabelled rows."""
    import torch
    p = torch_all_gather_rows(probs.detach().to(torch.float32).reshape(-1, thresholds.num_classes),
                              group)
    thresholds.update_labeled_probs(p.contiguous().numpy())
