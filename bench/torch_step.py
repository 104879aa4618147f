# The PyTorch side of bench/vs_pytorch.sh: a plain training loop at one shape, printing one JSON line.
# transformers' BertForSequenceClassification / GPT2LMHeadModel built from a config (random weights, no downloads);
# each timed step is zero_grad + forward + loss + backward (+ clip_grad_norm_(1.0) + AdamW step with --optim adamw),
# on fresh random token ids, dropout active (model.train()), warm-up steps excluded. With --precision bf16 the
# forward and loss run under torch.autocast("cpu", dtype=torch.bfloat16) (fp32 weights, gradients and optimizer).
# With --ranks 2: DistributedDataParallel over gloo, one process per rank pinned to one core, --batch per rank.
#   python bench/torch_step.py --model minilm --batch 32 --seq 128 --threads 1 --steps 6 --warmup 2 --optim adamw
# Output: tokens_per_s (batch·seq·world / median step, the statistic disttrain's bench reports) and
# tokens_per_s_total (batch·seq·world·steps / total timed wall), step_s_median, peak_rss_mb (per process).
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build(name):
    """The model of a shape: MiniLM from the local folder's config.json, BERT-base from bench/configs, GPT-2 shapes
    from GPT2Config (vocab 50257, 1024 positions, dropout 0.1, tied head: the shapes disttrain's benchmarks use)."""
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
    if name in ("minilm", "bert-base"):
        path = os.path.join(ROOT, "models/all-MiniLM-L6-v2/config.json") if name == "minilm" \
            else os.path.join(HERE, "configs/bert-base.json")
        with open(path) as f:
            cfg = json.load(f)
        config = BertConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
        config.num_labels = 2
        return BertForSequenceClassification(config), "encoder", config
    layers, embd, heads = {"gpt2-6x384": (6, 384, 6), "gpt2-12x768": (12, 768, 12)}[name]
    config = GPT2Config(n_layer=layers, n_embd=embd, n_head=heads, vocab_size=50257, n_positions=1024)
    return GPT2LMHeadModel(config), "lm", config


def worker(rank, args):
    world = args.ranks
    if world > 1:
        import torch.distributed as dist
        os.sched_setaffinity(0, {rank % os.cpu_count()})   # as mpirun --bind-to core
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
    torch.set_num_threads(args.threads)
    torch.manual_seed(1234)
    model, kind, config = build(args.model)
    model.train()
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01) if args.optim == "adamw" else None
    gen = torch.Generator().manual_seed(99 + rank)
    B, T = args.batch, args.seq
    times = []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, config.vocab_size, (B, T), generator=gen)
        mask = torch.ones(B, T, dtype=torch.long)
        labels = torch.randint(0, 2, (B,), generator=gen) if kind == "encoder" else ids
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        dt = time.perf_counter() - t0
        if world > 1:
            t = torch.tensor([dt])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)   # the slowest rank's step, as disttrain's bench
            dt = t.item()
        if step >= args.warmup:
            times.append(dt)
    if not torch.isfinite(loss.detach()).item():
        sys.exit(f"torch_step.py: non-finite loss {loss.item()} at {args.model}")
    med = statistics.median(times)
    tokens = B * T * world
    out = {"impl": "pytorch", "torch": torch.__version__, "model": args.model, "batch_per_rank": B, "seq": T,
           "threads": args.threads, "world_size": world, "precision": args.precision, "optim": args.optim,
           "steps": args.steps, "step_s_median": med, "tokens_per_s": tokens / med,
           "tokens_per_s_total": tokens * len(times) / sum(times),
           "attn_implementation": getattr(config, "_attn_implementation", None),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if rank == 0:
        print(json.dumps(out, sort_keys=True), flush=True)
    if world > 1:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, choices=["minilm", "bert-base", "gpt2-6x384", "gpt2-12x768"])
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--optim", choices=["adamw", "none"], default="adamw")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    if args.ranks > 1:
        import torch.multiprocessing as mp
        mp.spawn(worker, args=(args,), nprocs=args.ranks, join=True)
    else:
        worker(0, args)


if __name__ == "__main__":
    main()
