"""RULER-style retrieval accuracy of chunked prefill with real weights
(see README.md next to this file; not run on the development machines).

    python bench/ruler/run_ruler.py --model meta-llama/Llama-3.1-8B-Instruct \\
        --lengths 8192,32768,131072 --samples 20 \\
        --methods sdpa,dense,compact@0.06:s4,compact@0.06:s1qb --out ruler.json

Per sample: the prompt is prefilled chunk by chunk through
compact_attention.hf.ChunkedPrefillSession (attention: the method), its K/V
handed to a transformers DynamicCache, and the answer decoded greedily with
the model's own attention (decoding is not our kernel). Score: RULER's
string_match_all (the fraction of reference strings found in the output,
case-insensitive), per task, length and method.

Tasks (built in, RULER-like): niah_single, niah_multikey, niah_multivalue
(needles "One of the special magic numbers for <key> is: <7 digits>." in a
haystack of repeated filler sentences) and vt (variable tracking: a chain of
5 assignments). With --data-dir, samples come from the RULER repository's
prepared files instead: <dir>/<task>/validation.jsonl or <dir>/<task>.jsonl,
fields "input", "outputs" and optional "answer_prefix" (appended to the
input; RULER's model template is already in "input").

Methods: sdpa (dense SDPA flash under the same chunked driver), dense (our
kernel, every block), compact@<alpha>:s<s>[qb] (our selector; "qb": one table
per query block), and any NAME given with --baseline NAME=module:function
(module looked up in bench/, e.g. --baseline quoka=baselines:quoka_attention;
the function takes (q, k, v, c0) as compact_attention.hf documents).
"""

import argparse
import importlib
import json
import random
import string
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

from compact_attention import hf  # noqa: E402

NOISE = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
         "There and back again.")
ADJECTIVES = ("amber ancient brave calm clever crimson curious eager fancy gentle golden happy "
              "hidden humble jolly lively lucky mellow quiet rapid silent silver steady swift "
              "tender vivid wild witty young zesty").split()
NOUNS = ("anchor badger canyon cedar comet falcon garden harbor island jaguar lantern meadow "
         "mirror orchard otter pebble puzzle rocket saddle spruce summit thunder tunnel valley "
         "violin walnut willow zephyr").split()
NIAH_HEADER = ("Some special magic numbers are hidden within the following text. Make sure to "
               "memorize it. I will quiz you about the numbers afterwards.")
VT_HEADER = "Memorize and track the chain(s) of variable assignment hidden in the following text."
MAX_NEW = {"niah_single": 128, "niah_multikey": 128, "niah_multivalue": 128, "vt": 30}


def needle(key, value):
    return f"One of the special magic numbers for {key} is: {value}."


def number(rng):
    return str(rng.randint(1_000_000, 9_999_999))


def niah(rng, kind):
    """(header, needles, question, answer prefix, answers) of a NIAH task."""
    keys = []
    while len(keys) < (4 if kind == "multikey" else 1):
        key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
        keys += [key] if key not in keys else []
    key = keys[0]
    if kind == "multivalue":
        values = [number(rng) for _ in range(4)]
        return (NIAH_HEADER, [needle(key, v) for v in values],
                f"What are all the special magic numbers for {key} mentioned in the provided "
                "text?", f"The special magic numbers for {key} mentioned in the provided text are",
                values)
    values = [number(rng) for _ in keys]  # keys[1:] are distractors (multikey)
    needles = [needle(k, v) for k, v in zip(keys, values)]
    rng.shuffle(needles)
    return (NIAH_HEADER, needles,
            f"What is the special magic number for {key} mentioned in the provided text?",
            f"The special magic number for {key} mentioned in the provided text is", values[:1])


def variable_tracking(rng, hops=4):
    value = str(rng.randint(10_000, 99_999))
    names = []
    while len(names) < hops + 1:
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        names += [name] if name not in names else []
    chain = [f"VAR {names[0]} = {value}."]
    chain += [f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)]
    return (VT_HEADER, chain,
            f"Question: Find all variables that are assigned the value {value} in the text above.",
            f"Answer: According to the chain(s) of variable assignment in the text above, "
            f"{hops + 1} variables are assigned the value {value}, they are:", names)


TASKS = {"niah_single": lambda rng: niah(rng, "single"),
         "niah_multikey": lambda rng: niah(rng, "multikey"),
         "niah_multivalue": lambda rng: niah(rng, "multivalue"),
         "vt": variable_tracking}


def encode(tokenizer, text, prefix, chat):
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return tokenizer(text + prefix, add_special_tokens=not chat).input_ids


def synthetic(tokenizer, task, length, rng, chat):
    """A prompt of at most `length` tokens (token ids) and its answers: the
    needles (in order) at random places of a filler haystack."""
    header, needles, question, prefix, answers = TASKS[task](rng)
    unit = len(tokenizer(" " + NOISE, add_special_tokens=False).input_ids)
    n = max(1, length // unit)
    for _ in range(8):
        where = sorted(rng.sample(range(n + 1), len(needles)))
        parts = [NOISE] * n
        for offset, (i, text) in enumerate(zip(where, needles)):
            parts.insert(i + offset, text)
        ids = encode(tokenizer, f"{header}\n\n{' '.join(parts)}\n\n{question}", " " + prefix, chat)
        if len(ids) <= length:
            return ids, answers
        n = max(1, n - (len(ids) - length) // unit - 1)
    raise SystemExit(f"run_ruler: could not fit task {task} into {length} tokens")


def from_data_dir(tokenizer, data_dir, task, limit):
    for path in (data_dir / task / "validation.jsonl", data_dir / f"{task}.jsonl"):
        if path.exists():
            rows = [json.loads(line) for line in path.open() if line.strip()][:limit]
            encoded = [tokenizer(r["input"] + r.get("answer_prefix", ""),
                                 add_special_tokens=False).input_ids for r in rows]
            return [(r.get("length", len(ids)), ids, r["outputs"])
                    for r, ids in zip(rows, encoded)]
    raise SystemExit(f"run_ruler: no {task}/validation.jsonl or {task}.jsonl in {data_dir}")


def method_kwargs(spec, extra, args):
    if spec == "sdpa":
        return dict(method="baseline", baseline=hf.sdpa_baseline)
    if spec == "dense":
        return dict(method="dense")
    if spec in extra:
        return dict(method="baseline", baseline=extra[spec])
    if spec.startswith("compact@") and ":s" in spec:
        alpha, s = spec[len("compact@"):].split(":s")
        return dict(method="compact", alpha=float(alpha), exec_group_size=int(s.rstrip("qb")),
                    per_query_block=s.endswith("qb"), sink=args.sink, window=args.window)
    raise SystemExit(f"run_ruler: unknown method {spec!r} (sdpa, dense, compact@<alpha>:s<s>[qb] "
                     "or a --baseline name)")


def load_baselines(specs):
    out = {}
    for spec in specs:
        name, target = spec.split("=")
        module, function = target.split(":")
        out[name] = getattr(importlib.import_module(module), function)
    return out


def string_match_all(prediction, references):
    return sum(r.lower() in prediction.lower() for r in references) / len(references)


def decode(model, session, ids, first, max_new, eos):
    """Greedy decoding from the prefill's last-token logits, over the
    prefill's K/V in a DynamicCache, with the model's own attention."""
    cache = session.dynamic_cache()
    token, out = first[:, -1:].argmax(-1), []
    with torch.no_grad():
        for i in range(max_new):
            if int(token) in eos:
                break
            out.append(int(token))
            if i + 1 < max_new:
                pos = torch.full((1, 1), ids.shape[1] + i, device=ids.device)
                token = model(input_ids=token, past_key_values=cache, position_ids=pos,
                              use_cache=True).logits[:, -1:].argmax(-1)
    return out


def load_model(name):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.bfloat16}
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="sdpa", **dtype)
    return model.to("cuda").eval(), AutoTokenizer.from_pretrained(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF model id or local path (LLaMA-like)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--lengths", default="8192,32768", help="prompt lengths (synthetic tasks)")
    ap.add_argument("--samples", type=int, default=20, help="per task and length")
    ap.add_argument("--data-dir", type=Path, help="RULER's prepared data (one length)")
    ap.add_argument("--methods", default="sdpa,dense,compact@0.06:s4,compact@0.06:s1qb")
    ap.add_argument("--baseline", action="append", default=[], metavar="NAME=module:function")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--sink", type=int, default=2)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, help="default: 128 (niah), 30 (vt)")
    ap.add_argument("--no-chat-template", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="ruler.json")
    args = ap.parse_args()
    model, tokenizer = load_model(args.model)
    chat = bool(getattr(tokenizer, "chat_template", None)) and not args.no_chat_template
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    rng = random.Random(args.seed)
    samples = []  # (task, length, ids, answers)
    for task in args.tasks.split(","):
        if args.data_dir:
            samples += [(task, *row) for row in
                        from_data_dir(tokenizer, args.data_dir, task, args.samples)]
            continue
        for length in map(int, args.lengths.split(",")):
            samples += [(task, length, *synthetic(tokenizer, task, length, rng, chat))
                        for _ in range(args.samples)]
    max_len = max(len(ids) for _, _, ids, _ in samples)
    extra = load_baselines(args.baseline)
    results, t0 = [], time.time()
    for spec in args.methods.split(","):
        session = hf.ChunkedPrefillSession(model, 1, max_len, args.chunk,
                                           **method_kwargs(spec, extra, args))
        for task, length, ids, answers in samples:
            ids_t = torch.tensor([ids], device="cuda")
            out = session.prefill(ids_t, logits="last", timing=True)
            max_new = args.max_new_tokens or MAX_NEW.get(task, 128)
            text = tokenizer.decode(decode(model, session, ids_t, out.logits, max_new, eos),
                                    skip_special_tokens=True)
            results.append({"method": spec, "task": task, "length": length, "tokens": len(ids),
                            "score": string_match_all(text, answers), "answers": answers,
                            "prediction": text, "attention_ms": out.attention_ms,
                            "density": session.density()})
        print(f"{spec}: {len(samples)} samples ({time.time() - t0:.0f}s)", flush=True)
        del session
        torch.cuda.empty_cache()
    table = {}
    for r in results:
        table.setdefault((r["task"], r["length"]), {}).setdefault(r["method"], []).append(
            r["score"])
    methods = args.methods.split(",")
    print(f"{'task':<16} {'length':>7} " + " ".join(f"{m:>18}" for m in methods))
    for (task, length), by in table.items():
        print(f"{task:<16} {length:>7} " + " ".join(
            f"{100 * sum(by[m]) / len(by[m]):>18.1f}" for m in methods))
    Path(args.out).write_text(json.dumps({"model": args.model, "chunk": args.chunk,
                                          "chat_template": chat, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
