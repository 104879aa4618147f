#!/usr/bin/env python3
"""
ner_goldens.py -- golden fixtures for token classification (NER), from torch + transformers + seqeval themselves.

Run:   python3 scripts/goldens/ner_goldens.py     (from the repo root; no network)
Needs: torch, transformers (5.23 used), seqeval 1.2.2, safetensors, numpy.
Reads: Tests/ModelTests/Fixtures/{bert,distilbert}-tiny-cls (the tiny encoders and their tokenizer).
Writes Tests/ModelTests/Fixtures/ner-golden/:
  <name>.json / <name>.safetensors  for name in bert-tok, distilbert-tok:
      BertForTokenClassification / DistilBertForTokenClassification = the fixture's encoder + a seeded classifier
      head (N(0, 0.5), seed 7) over 7 CoNLL-style tags; 3 batches of word-tagged sentences encoded as run_ner does
      (is_split_into_words, first sub-token labelled, others -100) -> input_ids, attention_mask, labels; logits and
      the HF loss (mean CE over non-ignored tokens) of batch 0; every gradient of that loss (word embeddings: only
      the rows the three batches use, "rows"); a 6-step AdamW trajectory as the HF Trainer runs it (lr 1e-3, linear
      warmup 2 of 6, wd 0.01 on Trainer's decay set, clip 1.0): per-step loss, pre-clip norm, lr, and the final
      parameters (word embeddings: the used rows; the others only decay, p * prod(1 - lr_k * wd)).
      The head and config of the token model ("head/..." tensors, "config"); the encoder is the cls fixture's.
      Window golden: a 40-word sentence, its word_ids and input_ids untruncated.
      Pipeline golden: pipeline("token-classification", aggregation_strategy="first") on texts and one pre-split
      input, with the entities it returns.
  seqeval.json: for each scheme (IOB1, IOB2, IOE1, IOE2, IOBES, BILOU), 30 groups of 4 random (true, pred) tag
      sentences (240 sequences per scheme): the entities of default-mode get_entities (flattened offsets) and of
      strict-mode Entities, and classification_report(output_dict=True) in default and strict mode + accuracy_score.
"""
import json
import os
import random
import sys

import numpy as np
import torch
import seqeval
from safetensors.torch import save_file
from seqeval.metrics import accuracy_score, classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import BILOU, IOB1, IOB2, IOBES, IOE1, IOE2, Entities
import transformers
from transformers import (AutoTokenizer, BertConfig, BertForTokenClassification, DistilBertConfig,
                          DistilBertForTokenClassification, get_linear_schedule_with_warmup, pipeline)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
OUT = os.path.join(FIX, "ner-golden")
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

LABELS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]
SENTENCES = [
    [(["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."], ["B-ORG", "O", "B-LOC", "O", "O", "O", "B-LOC", "O", "O"]),
     (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
     (["The", "European", "Commission", "said", "on", "Thursday", "it", "disagreed"], ["O", "B-ORG", "I-ORG", "O", "O", "O", "O", "O"])],
    [(["Germany's", "representative", "to", "the", "U.S.", "Werner", "Zwingmann"], ["B-LOC", "O", "O", "O", "B-LOC", "B-PER", "I-PER"]),
     (["Café", "owners", "in", "São", "Paulo", "celebrated"], ["O", "O", "O", "B-LOC", "I-LOC", "O"]),
     (["Unbelievably", "incomprehensible", "statements", "by", "Microsoft"], ["O", "O", "O", "O", "B-ORG"])],
    [(["Rabinovich", "met", "Tanzanian", "officials", "in", "Dar", "es", "Salaam"], ["B-PER", "O", "B-LOC", "O", "O", "B-LOC", "I-LOC", "I-LOC"]),
     (["Oil", "prices", "rose", "3.5%", "on", "Tuesday", ",", "Reuters", "said"], ["O", "O", "O", "O", "O", "O", "O", "B-ORG", "O"])],
]
PIPE_TEXTS = ["EU rejects German call to boycott British lamb.",
              "Peter Blackburn met Werner Zwingmann in São Paulo, Brazil on Tuesday.",
              "The U.S. Securities and Exchange Commission fined Microsoft Corp. $1.5 million!",
              "Unbelievably, incomprehensible statements by Rabinovich."]
PIPE_WORDS = ["Werner", "Zwingmann", "visited", "Dar-es-Salaam", "yesterday"]
HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, warmup_steps=2, total_steps=6, max_grad_norm=1.0)


def encode(tok, batch):
    words = [w for w, _ in batch]
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    labels = []
    for i, (_, tags) in enumerate(batch):
        prev = None
        row = []
        for wid in enc.word_ids(i):
            if wid is None:
                row.append(-100)
            elif wid != prev:
                row.append(LABELS.index(tags[wid]))
            else:
                row.append(-100)
            prev = wid
        labels.append(row)
    enc["labels"] = torch.tensor(labels)
    return enc


def build(kind):
    src = os.path.join(FIX, f"{kind}-tiny-cls")
    cfg_json = json.load(open(os.path.join(src, "config.json")))
    for k in ["architectures", "id2label", "label2id", "problem_type"]:
        cfg_json.pop(k, None)
    cfg_json["id2label"] = {str(i): l for i, l in enumerate(LABELS)}
    cfg_json["label2id"] = {l: i for i, l in enumerate(LABELS)}
    Cfg, Model = (BertConfig, BertForTokenClassification) if kind == "bert" else (DistilBertConfig, DistilBertForTokenClassification)
    config = Cfg(**{k: v for k, v in cfg_json.items() if k not in ("model_type", "transformers_version", "dtype")})
    config._attn_implementation = "eager"
    model = Model(config)
    from safetensors.torch import load_file
    base = load_file(os.path.join(src, "model.safetensors"))
    sd = model.state_dict()
    for n in sd:
        if not n.startswith("classifier."):
            sd[n] = base[n].clone()
    g = torch.Generator().manual_seed(7)
    sd["classifier.weight"] = torch.randn(sd["classifier.weight"].shape, generator=g) * 0.5
    sd["classifier.bias"] = torch.randn(sd["classifier.bias"].shape, generator=g) * 0.5
    model.load_state_dict(sd)
    model.eval()
    return model, AutoTokenizer.from_pretrained(src), config


def decay_names(model):
    from transformers import Trainer
    return set(Trainer.get_decay_parameter_names(None, model))


def golden_model(kind):
    model, tok, config = build(kind)
    bert = kind == "bert"
    wname = ("bert" if bert else "distilbert") + ".embeddings.word_embeddings.weight"
    t = {}
    meta = {"model_class": type(model).__name__, "labels": LABELS, "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in HP.items()},
            "config": json.loads(config.to_json_string()), "batches": []}
    encs = [encode(tok, b) for b in SENTENCES]
    rows = sorted(set(int(x) for e in encs for x in e["input_ids"].flatten()))
    t["rows"] = torch.tensor(rows, dtype=torch.int64)
    for k, (e, b) in enumerate(zip(encs, SENTENCES)):
        meta["batches"].append([{"tokens": w, "tags": tg} for w, tg in b])
        t[f"batch{k}/input_ids"] = e["input_ids"].to(torch.int64)
        t[f"batch{k}/attention_mask"] = e["attention_mask"].to(torch.int64)
        t[f"batch{k}/labels"] = e["labels"].to(torch.int64)
    t["head/classifier.weight"] = model.classifier.weight.detach().clone()
    t["head/classifier.bias"] = model.classifier.bias.detach().clone()

    def kw(e):
        d = {"input_ids": e["input_ids"], "attention_mask": e["attention_mask"], "labels": e["labels"]}
        if bert:
            d["token_type_ids"] = e["token_type_ids"]
        return d

    # logits, loss and every gradient of batch 0
    model.zero_grad()
    out = model(**kw(encs[0]))
    out.loss.backward()
    t["batch0/logits"] = out.logits.detach().clone()
    meta["loss0"] = out.loss.item()
    for n, p in model.named_parameters():
        g = p.grad.detach().clone()
        t["grad/" + n] = g[rows] if n == wname else g
    # 6 AdamW steps as the HF Trainer
    model.train()
    dec = decay_names(model)
    named = [(n, p) for n, p in model.named_parameters()]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if n in dec], "weight_decay": HP["weight_decay"]},
                             {"params": [p for n, p in named if n not in dec], "weight_decay": 0.0}],
                            lr=HP["lr"], betas=HP["betas"], eps=HP["eps"], foreach=False, fused=False)
    sched = get_linear_schedule_with_warmup(opt, HP["warmup_steps"], HP["total_steps"])
    log = []
    for step in range(HP["total_steps"]):
        bi = step % 3
        opt.zero_grad(set_to_none=True)
        loss = model(**kw(encs[bi])).loss
        loss.backward()
        gn64 = float(sum(float((p.grad.double() ** 2).sum()) for _, p in named) ** 0.5)
        torch.nn.utils.clip_grad_norm_([p for _, p in named], HP["max_grad_norm"], foreach=False)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        log.append({"step": step + 1, "batch": bi, "loss": loss.item(), "grad_norm_preclip_exact": gn64, "lr": lr})
    meta["train_log"] = log
    meta["decay"] = sorted(dec)
    for n, p in model.named_parameters():
        v = p.detach().clone()
        t["final/" + n] = v[rows] if n == wname else v
    model.eval()
    return model, tok, config, t, meta


def golden_windows(tok, meta, t):
    words = ("In Brussels , the European Commission and representatives of Germany , France and the "
             "United Kingdom discussed unbelievably incomprehensible regulations about British lamb exports "
             "while Peter Blackburn reported from São Paulo for Reuters on Thursday evening .").split()
    enc = tok(words, is_split_into_words=True)
    meta["window"] = {"tokens": words, "word_ids": [w if w is not None else -1 for w in enc.word_ids()],
                      "input_ids": enc["input_ids"]}


def golden_pipeline(model, tok, meta):
    pipe = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy="first", device=-1)
    out = []
    for text in PIPE_TEXTS:
        ents = pipe(text)
        out.append({"text": text, "entities": [{"type": e["entity_group"], "start": int(e["start"]), "end": int(e["end"]),
                                                "score": float(e["score"]), "word": e["word"]} for e in ents]})
    ents = pipe(PIPE_WORDS, is_split_into_words=True)
    if ents and isinstance(ents[0], list):   # a list input comes back as a batch of one
        ents = ents[0]
    out.append({"tokens": PIPE_WORDS, "entities": [{"type": e["entity_group"], "start": int(e["start"]), "end": int(e["end"]),
                                                    "score": float(e["score"]), "word": e["word"]} for e in ents]})
    meta["pipeline"] = out


def golden_seqeval():
    rng = random.Random(1234)
    types = ["PER", "LOC", "ORG", "MISC"]
    schemes = {"iob1": (IOB1, "IOB"), "iob2": (IOB2, "IOB"), "ioe1": (IOE1, "IOE"), "ioe2": (IOE2, "IOE"),
               "iobes": (IOBES, "IOBES"), "bilou": (BILOU, "BILUO")}
    out = {"seqeval_version": seqeval.__version__ if hasattr(seqeval, "__version__") else "1.2.2", "schemes": {}}
    for name, (cls, prefixes) in schemes.items():
        groups = []
        for _ in range(30):
            def sent():
                n = rng.randint(1, 8)
                return [("O" if (p := rng.choice(prefixes)) == "O" or rng.random() < 0.3 else f"{p}-{rng.choice(types)}") for _ in range(n)]
            y_true = [sent() for _ in range(4)]
            y_pred = [[(tg if rng.random() < 0.6 else rng.choice(["O"] + [f"{p}-{ty}" for p in prefixes if p != "O" for ty in types])) for tg in s] for s in y_true]
            rec = {"true": y_true, "pred": y_pred,
                   "default_entities_true": [list(e) for e in get_entities(y_true)],
                   "default_entities_pred": [list(e) for e in get_entities(y_pred)],
                   "strict_entities_true": [[e.sent_id, e.tag, e.start, e.end] for s in Entities(y_true, cls).entities for e in s],
                   "strict_entities_pred": [[e.sent_id, e.tag, e.start, e.end] for s in Entities(y_pred, cls).entities for e in s],
                   "accuracy": accuracy_score(y_true, y_pred)}
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec["default_report"] = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
                rec["strict_report"] = classification_report(y_true, y_pred, output_dict=True, mode="strict", scheme=cls, zero_division=0)
            for r in ("default_report", "strict_report"):
                rec[r] = {k: {kk: (float(vv) if np.isfinite(vv) else None) for kk, vv in v.items()} for k, v in rec[r].items()}
            groups.append(rec)
        out["schemes"][name] = groups
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    print("torch", torch.__version__, "transformers", transformers.__version__, file=sys.stderr)
    for kind in ["bert", "distilbert"]:
        model, tok, config, t, meta = golden_model(kind)
        golden_windows(tok, meta, t)
        # the pipeline runs the initial (seeded-head) model: rebuild it, the trajectory moved the weights
        model0, tok0, _ = build(kind)
        golden_pipeline(model0, tok0, meta)
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, f"{kind}-tok.safetensors"))
        json.dump(meta, open(os.path.join(OUT, f"{kind}-tok.json"), "w"), indent=1, ensure_ascii=False)
    json.dump(golden_seqeval(), open(os.path.join(OUT, "seqeval.json"), "w"), separators=(",", ":"))


if __name__ == "__main__":
    main()
