"""Makes Tests/ModelTests/Fixtures/grpo-reward-bert: a tiny BERT reward model (one output, problem_type regression)
for the GRPO task's tests, from the tiny BERT classifier fixture (its encoder kept, a fresh 1-output head drawn by
torch from a fixed seed with std 1 so that rewards of different texts differ visibly). It uses another tokenizer
(WordPiece) than the GPT-2 policy, so the tests exercise decoding and re-tokenizing completions.

Run: python3 scripts/goldens/grpo_reward_fixture.py
"""
import os
import shutil
import torch
from transformers import BertForSequenceClassification

root = os.path.join(os.path.dirname(__file__), "..", "..")
src = os.path.join(root, "Tests/ModelTests/Fixtures/bert-tiny-cls")
dst = os.path.join(root, "Tests/ModelTests/Fixtures/grpo-reward-bert")
torch.manual_seed(17)
model = BertForSequenceClassification.from_pretrained(src, num_labels=1, ignore_mismatched_sizes=True,
                                                      id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
model.config.problem_type = "regression"
with torch.no_grad():
    model.classifier.weight.normal_(0.0, 1.0)
    model.classifier.bias.zero_()
model.save_pretrained(dst, safe_serialization=True)
for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(os.path.join(src, f), os.path.join(dst, f))
# A check the fixture scores as transformers does (printed for the record).
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(dst)
for text in ["hello world", "the cat sat on the mat"]:
    enc = tok(text, return_tensors="pt")
    print(text, "->", model(**enc).logits[0, 0].item())
