#!/usr/bin/env python3
"""
qa_goldens.py -- golden fixtures for extractive question answering, from torch + transformers and the run_qa reference.

Run (from the repo root; no network once the two reference files are on disk):
    pip download transformers==4.46.3 --no-deps -d /tmp/tf4
    (cd /tmp/tf4 && unzip -o transformers-4.46.3-py3-none-any.whl transformers/data/metrics/squad_metrics.py)
    UTILS_QA=/path/to/utils_qa.py SQUAD_METRICS=/tmp/tf4/transformers/data/metrics/squad_metrics.py \
        python3 scripts/goldens/qa_goldens.py
  UTILS_QA: transformers' examples/pytorch/question-answering/utils_qa.py (run_qa's post-processing; the examples
  are not in the transformers wheel). Its postprocess_qa_predictions is called as is; if your copy's signature is
  the upstream one it returns only the answers, so pass a copy whose function also returns (all_nbest_json,
  scores_diff_json), as it builds them, or set output_dir (done here when the function accepts it).
  SQUAD_METRICS: transformers 4.x's squad_metrics.py (the official SQuAD v2.0 evaluation's normalize_answer,
  compute_exact, compute_f1; dropped from transformers 5). Its two package-relative imports are skipped.
Needs: torch, transformers (5.23 used), safetensors, numpy.
Reads: Tests/ModelTests/Fixtures/{bert,distilbert}-tiny-cls (the tiny encoders and their tokenizer).
Writes Tests/ModelTests/Fixtures/qa-golden/:
  <kind>-qa.json / <kind>-qa.safetensors for kind in bert, distilbert:
      BertForQuestionAnswering / DistilBertForQuestionAnswering = the fixture's encoder + a seeded qa_outputs
      (N(0, 0.5), seed 7; DistilBERT qa_dropout 0); 3 batches of 4 run_qa training features (max_length 32, stride 8,
      padding to max_length) -> input_ids, token_type_ids, attention_mask, start/end positions; batch 0's positions
      are pushed out of range for the loss golden ("clamp/start_positions": one start beyond T, ignored; one end
      negative, clamped to 0), with its start/end logits, the HF loss and every gradient (word embeddings: the rows
      the batches use); a 6-step AdamW trajectory as the HF Trainer (lr 1e-3, warmup 2 of 6, wd 0.01 on Trainer's
      decay set, clip 1.0) on the real positions: per-step loss, pre-clip norm, lr, final parameters.
  windows.json: hand-made examples (long context, answer across a window boundary, answer in a window's last
      token, no answer, accents and punctuation; "edge-last-token": the answer is the first window's last context token,
      run_qa's edge case where the start target runs into the padding) tokenized by the fixture's fast tokenizer as run_qa does
      (question.lstrip(), truncation only_second, stride, overflow, offsets, padding max_length) at two sizes:
      each feature's input_ids (unpadded), token_type_ids, context offsets (null outside the context), and
      run_qa's prepare_train_features start/end positions (its loop, transcribed).
  postprocess.json: for those features and seeded random start/end logits (plus planted spans), the answers,
      n-best lists (text, probability) and null-score differences of postprocess_qa_predictions under several
      settings (v1 and v2, n_best 20 / 3, max_answer_length 30 / 2, thresholds 0 / 2.5).
  squad.json: edge cases of the official normalisation: normalize_answer of strings, and exact/F1 (max over golds,
      v2's no-answer convention: golds that normalise to "" dropped, [""] when none remain) per case.
"""
import json
import os
import types

import numpy as np
import torch
from safetensors.torch import save_file, load_file
from transformers import (AutoTokenizer, BertConfig, BertForQuestionAnswering, DistilBertConfig,
                          DistilBertForQuestionAnswering, get_linear_schedule_with_warmup)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "ModelTests", "Fixtures")
OUT = os.path.join(FIX, "qa-golden")
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, warmup_steps=2, total_steps=6, max_grad_norm=1.0)


def load_reference(path, names):
    src = open(path, encoding="utf-8").read()
    src = "\n".join(l for l in src.splitlines() if not l.startswith("from ..."))
    ns = {"__name__": "ref", "logging": types.SimpleNamespace(get_logger=lambda *_: None)}
    import logging as _logging
    ns["logger"] = _logging.getLogger("ref")
    exec(compile(src, path, "exec"), ns)
    return [ns[n] for n in names]


postprocess_qa_predictions, = load_reference(os.environ["UTILS_QA"], ["postprocess_qa_predictions"])
normalize_answer, compute_exact, compute_f1 = load_reference(os.environ["SQUAD_METRICS"], ["normalize_answer", "compute_exact", "compute_f1"])

LONG = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France. "
        "They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under their leader Rollo, "
        "agreed to swear fealty to King Charles III of West Francia. Through generations of assimilation and mixing with "
        "the native Frankish and Roman-Gaulish populations, their descendants would gradually merge with the Carolingian-based "
        "cultures of West Francia.")
EXAMPLES = [
    {"id": "short", "question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris, the capital of France.", "answer": "Paris"},
    {"id": "long-early", "question": "  In what country is Normandy located?", "context": LONG, "answer": "France"},
    {"id": "long-late", "question": "Who was the Normans' leader?", "context": LONG, "answer": "Rollo"},
    {"id": "long-boundary", "question": "What populations did they mix with?", "context": LONG, "answer": "native Frankish and Roman-Gaulish populations"},
    {"id": "long-end", "question": "With which cultures did they merge?", "context": LONG, "answer": "Carolingian-based cultures of West Francia."},
    {"id": "accents", "question": "Which café?", "context": "Café Müller in São Paulo — opened in 1999 (or so)!", "answer": "Müller"},
    {"id": "no-answer", "question": "What is the capital of Spain?", "context": LONG, "answer": None},
    {"id": "numbers", "question": "When?", "context": "It rose 3.5% on Tuesday, 12/07/2026, at 9:30am.", "answer": "12/07/2026"},
]


def answers(e):
    if e["answer"] is None:
        return {"text": [], "answer_start": []}
    return {"text": [e["answer"]], "answer_start": [e.get("start", e["context"].index(e["answer"]))]}


def features(tok, examples, max_length, stride):
    """run_qa's tokenisation, with its prepare_train_features labelling and prepare_validation_features offsets."""
    enc = tok([e["question"].lstrip() for e in examples], [e["context"] for e in examples], truncation="only_second",
              max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")
    out = []
    for i in range(len(enc["input_ids"])):
        ex = examples[enc["overflow_to_sample_mapping"][i]]
        ids = enc["input_ids"][i]
        offsets = enc["offset_mapping"][i]
        seq = enc.sequence_ids(i)
        cls_index = ids.index(tok.cls_token_id)
        a = answers(ex)
        if len(a["answer_start"]) == 0:
            sp = ep = cls_index
        else:
            start_char = a["answer_start"][0]
            end_char = start_char + len(a["text"][0])
            ts = 0
            while seq[ts] != 1:
                ts += 1
            te = len(ids) - 1
            while seq[te] != 1:
                te -= 1
            if not (offsets[ts][0] <= start_char and offsets[te][1] >= end_char):
                sp = ep = cls_index
            else:
                while ts < len(offsets) and offsets[ts][0] <= start_char:
                    ts += 1
                sp = ts - 1
                while offsets[te][1] >= end_char:
                    te -= 1
                ep = te + 1
        n = sum(enc["attention_mask"][i])
        out.append({"example_id": ex["id"], "input_ids": ids[:n], "token_type_ids": enc["token_type_ids"][i][:n] if "token_type_ids" in enc else None,
                    "offset_mapping": [list(o) if seq[k] == 1 else None for k, o in enumerate(offsets)][:n],
                    "start_position": sp, "end_position": ep, "padded_ids": ids})
    return out


def build(kind):
    src = os.path.join(FIX, f"{kind}-tiny-cls")
    cfg_json = json.load(open(os.path.join(src, "config.json")))
    for k in ["architectures", "id2label", "label2id", "problem_type", "num_labels"]:
        cfg_json.pop(k, None)
    Cfg, Model = (BertConfig, BertForQuestionAnswering) if kind == "bert" else (DistilBertConfig, DistilBertForQuestionAnswering)
    config = Cfg(**{k: v for k, v in cfg_json.items() if k not in ("model_type", "transformers_version", "dtype")})
    if kind == "distilbert":
        config.qa_dropout = 0.0
    config._attn_implementation = "eager"
    model = Model(config)
    base = load_file(os.path.join(src, "model.safetensors"))
    sd = model.state_dict()
    for n in sd:
        if not n.startswith("qa_outputs."):
            sd[n] = base[n].clone()
    g = torch.Generator().manual_seed(7)
    sd["qa_outputs.weight"] = torch.randn(sd["qa_outputs.weight"].shape, generator=g) * 0.5
    sd["qa_outputs.bias"] = torch.randn(sd["qa_outputs.bias"].shape, generator=g) * 0.5
    model.load_state_dict(sd)
    model.eval()
    return model, AutoTokenizer.from_pretrained(src), config


def golden_model(kind):
    model, tok, config = build(kind)
    bert = kind == "bert"
    wname = ("bert" if bert else "distilbert") + ".embeddings.word_embeddings.weight"
    feats = [f for f in features(tok, EXAMPLES, 32, 8)]
    batches = [feats[0:4], feats[4:8], feats[8:12]]
    t = {}
    meta = {"model_class": type(model).__name__, "config": json.loads(config.to_json_string()),
            "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in HP.items()}}
    rows = sorted(set(int(x) for b in batches for f in b for x in f["padded_ids"]))
    t["rows"] = torch.tensor(rows, dtype=torch.int64)
    encs = []
    for k, b in enumerate(batches):
        ids = torch.tensor([f["padded_ids"] for f in b], dtype=torch.int64)
        mask = (torch.arange(32)[None, :] < torch.tensor([len(f["input_ids"]) for f in b])[:, None]).to(torch.int64)
        types_ = torch.zeros_like(ids)
        for r, f in enumerate(b):
            if f["token_type_ids"] is not None:
                types_[r, :len(f["token_type_ids"])] = torch.tensor(f["token_type_ids"])
        sp = torch.tensor([f["start_position"] for f in b], dtype=torch.int64)
        ep = torch.tensor([f["end_position"] for f in b], dtype=torch.int64)
        t[f"batch{k}/input_ids"] = ids; t[f"batch{k}/attention_mask"] = mask; t[f"batch{k}/token_type_ids"] = types_
        t[f"batch{k}/start_positions"] = sp; t[f"batch{k}/end_positions"] = ep
        encs.append((ids, mask, types_, sp, ep))
    t["head/qa_outputs.weight"] = model.qa_outputs.weight.detach().clone()
    t["head/qa_outputs.bias"] = model.qa_outputs.bias.detach().clone()

    def kw(e, sp=None, ep=None):
        d = {"input_ids": e[0], "attention_mask": e[1], "start_positions": e[3] if sp is None else sp, "end_positions": e[4] if ep is None else ep}
        if bert:
            d["token_type_ids"] = e[2]
        return d

    # loss with out-of-range positions: start of row 1 beyond T (ignored), end of row 2 negative (clamped to 0)
    csp, cep = encs[0][3].clone(), encs[0][4].clone()
    csp[1] = 40
    cep[2] = -3
    t["clamp/start_positions"] = csp; t["clamp/end_positions"] = cep
    model.zero_grad()
    out = model(**kw(encs[0], csp, cep))
    out.loss.backward()
    t["batch0/start_logits"] = out.start_logits.detach().clone()
    t["batch0/end_logits"] = out.end_logits.detach().clone()
    meta["loss0_clamped"] = out.loss.item()
    for n, p in model.named_parameters():
        g = p.grad.detach().clone()
        t["grad/" + n] = g[rows] if n == wname else g
    with torch.no_grad():
        meta["loss0"] = model(**kw(encs[0])).loss.item()
    # 6 AdamW steps as the HF Trainer
    from transformers import Trainer
    decay = set(Trainer.get_decay_parameter_names(None, model))
    meta["decay"] = sorted(decay)
    model.train()
    params = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": HP["weight_decay"]},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=HP["lr"], betas=HP["betas"], eps=HP["eps"])
    sched = get_linear_schedule_with_warmup(opt, HP["warmup_steps"], HP["total_steps"])
    log = []
    for step in range(HP["total_steps"]):
        k = step % 3
        lr = sched.get_last_lr()[0]
        opt.zero_grad()
        loss = model(**kw(encs[k])).loss
        loss.backward()
        exact = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), HP["max_grad_norm"]).item()
        opt.step(); sched.step()
        log.append({"batch": k, "loss": loss.item(), "grad_norm_preclip": norm, "grad_norm_preclip_exact": exact, "lr": lr})
    meta["train_log"] = log
    for n, p in model.named_parameters():
        v = p.detach().clone()
        t["final/" + n] = v[rows] if n == wname else v
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, f"{kind}-qa.safetensors"))
    json.dump(meta, open(os.path.join(OUT, f"{kind}-qa.json"), "w"), indent=1, sort_keys=True)
    print(kind, "loss0", meta["loss0"], "clamped", meta["loss0_clamped"])


def add_edge_example(tok):
    """run_qa's edge case: an answer that is a window's last context token (a whole word). Its start loop walks past
    [SEP] into the padding (all offsets (0, 0) <= start_char), so the start target is max_length - 1."""
    q = "What word ends the first window?"
    enc = tok(q, LONG, truncation="only_second", max_length=32, stride=8, return_overflowing_tokens=True, return_offsets_mapping=True)
    seq, offs, ids = enc.sequence_ids(0), enc["offset_mapping"][0], enc["input_ids"][0]
    last = max(k for k, s in enumerate(seq) if s == 1)
    a, b = offs[last]
    assert not tok.convert_ids_to_tokens(ids[last]).startswith("##") and (b == len(LONG) or not LONG[b].isalnum())
    EXAMPLES.append({"id": "edge-last-token", "question": q, "context": LONG, "answer": LONG[a:b], "start": a})


def golden_windows_and_postprocess():
    tok = AutoTokenizer.from_pretrained(os.path.join(FIX, "bert-tiny-cls"))
    add_edge_example(tok)
    win = {"examples": [{"id": e["id"], "question": e["question"], "context": e["context"], "answers": answers(e)} for e in EXAMPLES],
           "sizes": []}
    post = {"cases": []}
    rng = np.random.default_rng(11)
    for (L, S) in [(32, 8), (48, 16)]:
        feats = features(tok, EXAMPLES, L, S)
        win["sizes"].append({"max_length": L, "stride": S, "features": [
            {k: f[k] for k in ["example_id", "input_ids", "token_type_ids", "offset_mapping", "start_position", "end_position"]} for f in feats]})
        # logits: random, with the gold span planted in a window holding it (so the answer is not always random)
        starts, ends = [], []
        for f in feats:
            n = len(f["input_ids"])
            s = rng.normal(0, 2, n).astype(np.float32)
            e = rng.normal(0, 2, n).astype(np.float32)
            if f["start_position"] > 0 and f["start_position"] < n and f["end_position"] < n and rng.random() < 0.7:
                s[f["start_position"]] += 6; e[f["end_position"]] += 6
            if f["example_id"] == "no-answer":
                s[0] += 5; e[0] += 5
            starts.append(s); ends.append(e)
        examples = {"id": [e["id"] for e in EXAMPLES], "context": [e["context"] for e in EXAMPLES]}
        ex_list = [{"id": e["id"], "context": e["context"]} for e in EXAMPLES]

        class Examples(list):
            def __getitem__(self, k):
                return examples[k] if isinstance(k, str) else list.__getitem__(self, k)
        exs = Examples(ex_list)
        fs = [{"example_id": f["example_id"], "offset_mapping": f["offset_mapping"]} for f in feats]
        for v2 in [False, True]:
            for nbest, maxlen in [(20, 30), (3, 2)]:
                for thr in ([0.0, 2.5] if v2 else [0.0]):
                    res = postprocess_qa_predictions(exs, fs, ([x.tolist() for x in starts], [x.tolist() for x in ends]),
                                                     version_2_with_negative=v2, n_best_size=nbest, max_answer_length=maxlen,
                                                     null_score_diff_threshold=thr)
                    preds, nbest_json, diffs = res
                    post["cases"].append({"max_length": L, "stride": S, "version_2_with_negative": v2, "n_best_size": nbest,
                                          "max_answer_length": maxlen, "null_score_diff_threshold": thr,
                                          "predictions": preds, "nbest": {k: [{"text": p["text"], "probability": p["probability"]} for p in v] for k, v in nbest_json.items()},
                                          "null_score_diff": diffs})
        post.setdefault("logits", []).append({"max_length": L, "stride": S, "start": [x.tolist() for x in starts], "end": [x.tolist() for x in ends]})
    json.dump(win, open(os.path.join(OUT, "windows.json"), "w"), indent=None, ensure_ascii=False)
    json.dump(post, open(os.path.join(OUT, "postprocess.json"), "w"), indent=None, ensure_ascii=False)
    print("windows", [len(s["features"]) for s in win["sizes"]], "postprocess cases", len(post["cases"]))


def golden_squad():
    strings = ["The Eiffel Tower", "the  eiffel tower.", "An apple a day", "a", "The", "theater", "Anne's", "A-B-C", "  ",
               "", "Ünïcödé  Straße", "(1999)", "an\tapple\nthe end", "THE_END", "the_end", "2.5%", "Théâtre the", "«quoted»",
               "U.S.A.", "a.k.a. the", "x\u00a0y", "an_apple"]
    cases = [("Paris", ["Paris"]), ("paris.", ["Paris"]), ("the Paris", ["Paris"]), ("Paris France", ["Paris"]),
             ("Paris", ["Paris, France", "the city of Paris"]), ("", [""]), ("", ["Paris"]), ("Paris", [""]), ("", []),
             ("Paris", []), ("a", ["the"]), ("the the", ["a"]), ("1999", ["(1999)"]), ("Roman-Gaulish", ["Roman Gaulish"]),
             ("New York New York", ["New York"]), ("York New", ["New York"]), ("Ünïcödé", ["ünïcödé"]),
             ("between 1599 and 1601", ["1599 and 1601", "between 1599 and 1601"]), ("Theater", ["the ater"]),
             ("x y z", ["x y", "y z", "x z"])]
    out = {"normalize": [{"s": s, "normalized": normalize_answer(s)} for s in strings], "cases": []}
    for pred, golds in cases:
        g = [a for a in golds if normalize_answer(a)]
        if not g:
            g = [""]
        out["cases"].append({"prediction": pred, "golds": golds, "exact": max(compute_exact(a, pred) for a in g),
                             "f1": max(compute_f1(a, pred) for a in g)})
    json.dump(out, open(os.path.join(OUT, "squad.json"), "w"), indent=1, ensure_ascii=False)
    print("squad", len(out["normalize"]), len(out["cases"]))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    golden_squad()
    for kind in ["bert", "distilbert"]:
        golden_model(kind)   # on the first 12 features of EXAMPLES (before the edge example is appended)
    golden_windows_and_postprocess()
