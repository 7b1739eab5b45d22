"""Generate the studio's built-in data (assets/data) and tokenizer (assets/tokenizer).

Everything is invented here from small grammars and the arithmetic task in
studio/tasks.py; nothing is downloaded. Seeded and deterministic: running it twice
gives byte-identical data files.

    .venv/bin/python scripts/make_assets.py               # rewrites assets/
    .venv/bin/python scripts/make_assets.py --out /tmp/a  # somewhere else
    .venv/bin/python scripts/make_assets.py --no-tokenizer
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a plain script from anywhere: studio/ must be importable without installing.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio import tasks  # noqa: E402

SEED = 1234
VOCAB_SIZE = 1024
N_CORPUS_TRAIN = 3000
N_CORPUS_TEST = 150
ARITH_DOC_SHARE = 0.4

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve "
                "thirteen fourteen fifteen sixteen seventeen eighteen").split()
NAMES = ("Anna", "Ben", "Mia", "Tom", "Lea", "Sam", "Noor", "Ivan", "Zoe", "Omar",
         "Ruth", "Kai", "Ella", "Hugo", "Lina", "Max")
ANIMALS = {"cat": "cats", "dog": "dogs", "fox": "foxes", "bird": "birds", "horse": "horses",
           "cow": "cows", "fish": "fish", "rabbit": "rabbits", "owl": "owls", "bear": "bears",
           "duck": "ducks", "goat": "goats", "mouse": "mice", "frog": "frogs", "sheep": "sheep",
           "hen": "hens"}
COLOURS = ("red", "blue", "green", "yellow", "brown", "white", "black", "grey", "orange",
           "purple", "pink")
ADJECTIVES = ("small", "big", "happy", "quiet", "fast", "slow", "old", "young", "sleepy",
              "hungry", "brave", "shy")
PLACES = ("the park", "the river", "the forest", "the garden", "the farm", "the hill",
          "the town", "the lake", "the beach", "the barn", "the field", "the market")
VERBS = ("runs", "jumps", "sleeps", "swims", "eats", "sings", "walks", "hides", "plays",
         "rests", "waits", "looks around")
OBJECTS = ("a ball", "an apple", "a stick", "a hat", "a book", "some grass", "a leaf",
           "a box", "a cup of milk", "a carrot", "a shell", "a blanket")
TIMES = ("in the morning", "at night", "every day", "after lunch", "in the rain",
         "on Sunday", "in the evening", "before dinner")
WEATHER = ("sunny", "cold", "warm", "windy", "rainy", "quiet", "bright")


# ---------------------------------------------------------------- pretraining corpus

def _number(rng: random.Random, n: int, capital: bool = False) -> str:
    """A number as a word or as digits, so the model links the two."""
    text = NUMBER_WORDS[n] if rng.random() < 0.5 else str(n)
    return text[0].upper() + text[1:] if capital else text


def _story(rng: random.Random) -> str:
    name, animal, colour = rng.choice(NAMES), rng.choice(list(ANIMALS)), rng.choice(COLOURS)
    plural = ANIMALS[animal]
    place, other_place = rng.sample(PLACES, 2)
    adj, verb, obj, time = (rng.choice(ADJECTIVES), rng.choice(VERBS), rng.choice(OBJECTS),
                            rng.choice(TIMES))
    a, b = rng.randrange(1, 10), rng.randrange(1, 10)
    pool = [
        f"The {adj} {colour} {animal} {verb} in {place}.",
        f"{name} sees a {colour} {animal} near {place}.",
        f"The {animal} likes {obj}.",
        f"The {animal} is {colour}.",
        f"{time[0].upper() + time[1:]}, the {animal} goes to {other_place}.",
        f"{name} walks to {place} {time}.",
        f"It is {rng.choice(WEATHER)} at {place} today.",
        f"{name} gives {obj} to the {animal}.",
        f"The {animal} is {adj} and {rng.choice(ADJECTIVES)}.",
        f"{name} has {_number(rng, a)} {plural if a != 1 else animal}."
        f" Then {name} finds {_number(rng, b)} more."
        f" Now {name} has {_number(rng, a + b)} {plural}.",
        f"There are {_number(rng, a)} {plural if a != 1 else animal} at {place}"
        f" and {_number(rng, b)} at {other_place}."
        f" That makes {_number(rng, a + b)} {plural} in all.",
    ]
    if a >= b:
        left = a - b
        pool.append(f"{name} had {_number(rng, a)} {plural if a != 1 else animal}."
                    f" {_number(rng, b, capital=True)} ran away to {other_place}."
                    f" {name} has {_number(rng, left)} {plural if left != 1 else animal} left.")
    rng.shuffle(pool)
    return " ".join(pool[:rng.randrange(3, 7)])


def _fact(rng: random.Random) -> str:
    a, b = rng.randrange(10), rng.randrange(10)
    if rng.random() < 0.35:
        a, b = max(a, b), min(a, b)
        c = a - b
        forms = [f"{a} - {b} = {c}", f"{NUMBER_WORDS[a]} minus {NUMBER_WORDS[b]} is {NUMBER_WORDS[c]}.",
                 f"{a} minus {b} is {c}.", f"Take {b} from {a} and you get {c}.",
                 f"The difference between {a} and {b} is {c}."]
    else:
        c = a + b
        forms = [f"{a} + {b} = {c}", f"{NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]} is {NUMBER_WORDS[c]}.",
                 f"{a} plus {b} is {c}.", f"The sum of {a} and {b} is {c}.",
                 f"{a} and {b} make {c}.", f"{NUMBER_WORDS[a]} and {NUMBER_WORDS[b]} make {c}."]
    text = rng.choice(forms)
    return text[0].upper() + text[1:] if text[0].isalpha() else text


def _arith_doc(rng: random.Random) -> str:
    if rng.random() < 0.2:  # a short table: the same first number, counting up
        a, op = rng.randrange(10), rng.choice("+-")
        lines = [f"{a} {op} {b} = {tasks.compute(a, b, op)}" for b in range(10)
                 if op == "+" or b <= a]
        return "\n".join(lines)
    sep = "\n" if rng.random() < 0.5 else " "
    return sep.join(_fact(rng) for _ in range(rng.randrange(4, 9)))


def make_corpus(rng: random.Random, n: int) -> list[dict]:
    return [{"text": _arith_doc(rng) if rng.random() < ARITH_DOC_SHARE else _story(rng)}
            for _ in range(n)]


# ---------------------------------------------------------------- arithmetic task data

def _wrong_answer(rng: random.Random, answer: str) -> str:
    right = int(answer)
    if rng.random() < 0.7:  # a near miss is the informative kind of mistake
        candidates = [right + d for d in (-3, -2, -1, 1, 2, 3) if right + d >= 0]
    else:
        candidates = [n for n in range(19) if n != right]
    return str(rng.choice(candidates))


def sft_rows(items: list[dict]) -> list[dict]:
    return [{"messages": [{"role": "user", "content": it["prompt"]},
                          {"role": "assistant", "content": it["answer"]}],
             "answer": it["answer"]} for it in items]


def pref_rows(rng: random.Random, items: list[dict]) -> list[dict]:
    return [{"prompt": it["prompt"], "chosen": it["answer"],
             "rejected": _wrong_answer(rng, it["answer"])} for it in items]


def kto_rows(rng: random.Random, items: list[dict]) -> list[dict]:
    rows = []
    for it in items:
        rows.append({"prompt": it["prompt"], "completion": it["answer"], "label": True})
        rows.append({"prompt": it["prompt"], "completion": _wrong_answer(rng, it["answer"]),
                     "label": False})
    rng.shuffle(rows)
    return rows


def prompt_rows(items: list[dict]) -> list[dict]:
    return [{"prompt": it["prompt"], "answer": it["answer"]} for it in items]


# ---------------------------------------------------------------- function calling (Glaive style)

CITIES = {"Oslo": (3, "cloudy"), "Lisbon": (19, "sunny"), "Nairobi": (24, "clear"),
          "Lima": (17, "foggy"), "Osaka": (12, "rainy"), "Quito": (14, "windy"),
          "Tartu": (-2, "snowy"), "Perth": (28, "sunny")}
RATES = {("USD", "EUR"): 0.9, ("EUR", "USD"): 1.1, ("USD", "GBP"): 0.8,
         ("GBP", "USD"): 1.25, ("EUR", "JPY"): 160.0, ("USD", "JPY"): 150.0}
RECIPES = {"rice": ["fried rice", "rice pudding"], "eggs": ["omelette", "egg salad"],
           "lentils": ["lentil soup", "dal"], "apples": ["apple pie", "apple crumble"]}

FUNCTIONS = {
    "get_weather": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The name of the city"}},
            "required": ["city"]}},
    "convert_currency": {
        "name": "convert_currency", "description": "Convert an amount from one currency to another",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "number", "description": "The amount to convert"},
            "from_currency": {"type": "string", "description": "Currency code to convert from"},
            "to_currency": {"type": "string", "description": "Currency code to convert to"}},
            "required": ["amount", "from_currency", "to_currency"]}},
    "calculate_tip": {
        "name": "calculate_tip", "description": "Work out the tip for a restaurant bill",
        "parameters": {"type": "object", "properties": {
            "bill_amount": {"type": "number", "description": "The total bill"},
            "tip_percentage": {"type": "number", "description": "The tip in percent"}},
            "required": ["bill_amount", "tip_percentage"]}},
    "add_numbers": {
        "name": "add_numbers", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "number", "description": "The first number"},
            "b": {"type": "number", "description": "The second number"}},
            "required": ["a", "b"]}},
    "search_recipes": {
        "name": "search_recipes", "description": "Find recipes that use an ingredient",
        "parameters": {"type": "object", "properties": {
            "ingredient": {"type": "string", "description": "The ingredient to cook with"}},
            "required": ["ingredient"]}},
}

END = " <|endoftext|>"
GAP = "\n\n\n"


def _system(names: list[str]) -> str:
    specs = "\n\n".join(json.dumps(FUNCTIONS[n], indent=4) for n in names)
    return ("SYSTEM: You are a helpful assistant. You can call the functions below"
            " when they help -\n" + specs)


def _call(name: str, args: dict) -> str:
    # Glaive writes the arguments as a JSON string inside single quotes; keep that quirk
    # so the studio's Glaive reader is tested on the real shape.
    return f"<functioncall> {{\"name\": \"{name}\", \"arguments\": '{json.dumps(args)}'}}"


def _tool_case(rng: random.Random, name: str) -> tuple[str, dict, dict, str]:
    """(user question, call arguments, function response, final answer)."""
    if name == "get_weather":
        city = rng.choice(list(CITIES))
        temp, sky = CITIES[city]
        q = rng.choice([f"What's the weather like in {city} right now?",
                        f"Is it warm in {city} today?", f"Can you check the weather in {city}?"])
        return (q, {"city": city}, {"city": city, "temperature_c": temp, "condition": sky},
                f"In {city} it is {sky} and {temp} degrees Celsius at the moment.")
    if name == "convert_currency":
        (src, dst), rate = rng.choice(sorted(RATES.items()))
        amount = rng.choice([10, 25, 40, 100, 250, 500])
        out = round(amount * rate, 2)
        q = rng.choice([f"How much is {amount} {src} in {dst}?",
                        f"Please convert {amount} {src} to {dst}.",
                        f"I have {amount} {src}. What is that in {dst}?"])
        return (q, {"amount": amount, "from_currency": src, "to_currency": dst},
                {"converted_amount": out, "from_currency": src, "to_currency": dst},
                f"{amount} {src} is about {out} {dst}.")
    if name == "calculate_tip":
        bill, pct = rng.choice([20, 35, 48, 60, 85, 120]), rng.choice([10, 15, 20])
        tip = round(bill * pct / 100, 2)
        q = rng.choice([f"My bill is {bill} dollars. How much should I tip at {pct} percent?",
                        f"Work out a {pct}% tip on a bill of {bill}, please."])
        return (q, {"bill_amount": bill, "tip_percentage": pct}, {"tip_amount": tip},
                f"A {pct}% tip on {bill} is {tip}.")
    if name == "add_numbers":
        a, b = rng.randrange(10, 1000), rng.randrange(10, 1000)
        q = rng.choice([f"What is {a} plus {b}?", f"Can you add {a} and {b} for me?"])
        return q, {"a": a, "b": b}, {"result": a + b}, f"{a} plus {b} is {a + b}."
    ingredient = rng.choice(sorted(RECIPES))
    found = RECIPES[ingredient]
    q = rng.choice([f"I have some {ingredient}. What can I cook?",
                    f"Find me a recipe with {ingredient}."])
    return (q, {"ingredient": ingredient}, {"recipes": found},
            f"You could make {found[0]} or {found[1]} with {ingredient}.")


REFUSALS = [
    ("Can you book a flight to Rome for me?", "book flights"),
    ("Please order a pizza to my house.", "place food orders"),
    ("Could you send an email to my boss?", "send emails"),
    ("Set an alarm for seven tomorrow.", "set alarms"),
]
GREETINGS = ["Hi there!", "Hello, what can you do?", "Good morning!"]


def glaive_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        names = rng.sample(sorted(FUNCTIONS), rng.choice([1, 1, 2]))
        turns = []
        if i % 5 == 4:  # no call needed: a greeting or a request no function covers
            if rng.random() < 0.5:
                q, what = rng.choice(REFUSALS)
                turns.append(f"USER: {q}{GAP}ASSISTANT: I'm sorry, I can't {what}. I can only"
                             f" help with what my functions do, such as"
                             f" {FUNCTIONS[names[0]]['description'].lower()}.{END}")
            else:
                turns.append(f"USER: {rng.choice(GREETINGS)}{GAP}ASSISTANT: Hello! I can"
                             f" {FUNCTIONS[names[0]]['description'].lower()}."
                             f" What would you like?{END}")
        called = [] if i % 5 == 4 else names[:rng.choice([1, len(names)])]
        for name in called:
            q, args, response, answer = _tool_case(rng, name)
            turns.append(f"USER: {q}{GAP}ASSISTANT: {_call(name, args)}{END}{GAP}"
                         f"FUNCTION RESPONSE: {json.dumps(response)}{GAP}"
                         f"ASSISTANT: {answer}{END}")
        if rng.random() < 0.3:
            turns.append(f"USER: Thank you!{GAP}ASSISTANT: You're welcome! Anything else?{END}")
        rows.append({"system": _system(names), "chat": GAP.join(turns) + GAP})
    return rows


# ---------------------------------------------------------------- writing

def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_data(out: Path, seed: int = SEED) -> dict[str, list[dict]]:
    """Write every data file under out/data and return them by file name."""
    rng = random.Random(seed)
    items = tasks.make_items(seed)
    train, test = tasks.split_items(items, test_fraction=0.15, seed=seed)
    files = {
        "corpus_train.jsonl": make_corpus(rng, N_CORPUS_TRAIN),
        "corpus_test.jsonl": make_corpus(rng, N_CORPUS_TEST),
        "arith_sft_train.jsonl": sft_rows(train),
        "arith_sft_test.jsonl": sft_rows(test),
        "arith_prefs_train.jsonl": pref_rows(rng, train),
        "arith_prefs_test.jsonl": pref_rows(rng, test),
        "arith_kto_train.jsonl": kto_rows(rng, train),
        "arith_prompts_train.jsonl": prompt_rows(train),
        "arith_prompts_test.jsonl": prompt_rows(test),
        "tools_glaive.jsonl": glaive_rows(rng, 40),
    }
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        write_jsonl(data_dir / name, rows)
    write_extract_task(data_dir, seed)  # not in `files`: see write_extract_task
    write_eval_assets(out / "eval", files, seed)  # not in `files`: the tokenizer never reads them
    return files


# ---------------------------------------------------------------- field extraction (RL task 2)

EXTRACT_CITIES = ("Oslo", "Lisbon", "Nairobi", "Lima", "Seoul", "Cairo", "Dublin", "Quito", "Perth", "Riga")
EXTRACT_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EXTRACT_PHRASINGS = (
    "Book {n} tickets to {city} for {day}.",
    "I need {n} seats on the {day} trip to {city}.",
    "{day}: {city}, {n} people please.",
    "Can you get {n} of us to {city} on {day}?",
    "Reserve {city} on {day} for {n}.",
)
EXTRACT_INSTRUCTION = "Extract city, day and tickets as JSON: "


def extract_items(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Travel requests -> {"city", "day", "tickets"}. Held out: whole (city, day) pairs
    the training rows never show, so the policy must read the request, not remember it."""
    rng = random.Random(seed + 23)  # its own stream: the other files stay byte-identical
    pairs = [(c, d) for c in EXTRACT_CITIES for d in EXTRACT_DAYS]
    rng.shuffle(pairs)
    held = set(pairs[:len(pairs) * 15 // 100])
    train, test = [], []
    for city, day in sorted(pairs):
        for phrasing in EXTRACT_PHRASINGS:
            n = rng.randint(1, 9)
            request = phrasing.format(n=n, city=city, day=day)
            answer = json.dumps({"city": city, "day": day, "tickets": n})
            (test if (city, day) in held else train).append({"prompt": EXTRACT_INSTRUCTION + request,
                                                             "answer": answer})
    return train, test


def write_extract_task(data_dir: Path, seed: int = SEED) -> dict[str, list[dict]]:
    """The second shipped RL task (rewards json_valid + json_match): prompts with
    references, their held-out split, and SFT chats of the training prompts (to build a
    half-taught starting policy). Not fed to the tokenizer: it stays the one the
    arithmetic models were built with (byte-level BPE: JSON is never out of vocabulary)."""
    train, test = extract_items(seed)
    files = {
        "extract_prompts_train.jsonl": train,
        "extract_prompts_test.jsonl": test,
        "extract_sft_train.jsonl": [{"messages": [{"role": "user", "content": r["prompt"]},
                                                  {"role": "assistant", "content": r["answer"]}]} for r in train],
    }
    for name, rows in files.items():
        write_jsonl(data_dir / name, rows)
    return files


# ---------------------------------------------------------------- evaluation sets (issue 21)

EVAL_TASK_YAML = """# {what}
# Runs offline: lm_eval --model hf --model_args pretrained=DIR --tasks {task} --include_path assets/eval
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: assets/eval/{file}
test_split: test
output_type: multiple_choice
doc_to_text: "{text}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def general_probe_rows(rng: random.Random, corpus: list[dict], n: int = 120) -> list[dict]:
    """'What did it forget?': the last word of held-out corpus sentences, against three last
    words of other sentences, scored by log-likelihood (what a pretrained base knows)."""
    sentences = [s.strip() + "." for row in corpus for s in row["text"].replace("\n", " ").split(".")
                 if len(s.split()) >= 4]
    rows, ends = [], sorted({s.split()[-1].rstrip(".") for s in sentences})
    for sentence in sentences[:n]:
        words = sentence.rstrip(".").split()
        right = words[-1]
        wrong = rng.sample([w for w in ends if w != right], 3)
        choices = wrong + [right]
        rng.shuffle(choices)
        rows.append({"question": " ".join(words[:-1]), "choices": choices, "answer": choices.index(right)})
    return rows


def arith_mc_rows(rng: random.Random, items: list[dict]) -> list[dict]:
    rows = []
    for it in items:
        wrong = set()
        while len(wrong) < 3:
            wrong.add(_wrong_answer(rng, it["answer"]))
        choices = sorted(wrong | {it["answer"]}, key=int)
        rows.append({"question": it["prompt"], "choices": choices, "answer": choices.index(it["answer"])})
    return rows


def write_eval_assets(eval_dir: Path, files: dict[str, list[dict]], seed: int = SEED) -> None:
    """The shipped general probe and two small lm-eval tasks (YAML + JSONL) that run offline.
    Its own random stream, so every other asset stays byte-identical."""
    rng = random.Random(seed + 21)
    eval_dir.mkdir(parents=True, exist_ok=True)
    test = [{"prompt": r["prompt"], "answer": r["answer"]} for r in files["arith_prompts_test.jsonl"]]
    write_jsonl(eval_dir / "general_probe.jsonl", general_probe_rows(rng, files["corpus_test.jsonl"]))
    write_jsonl(eval_dir / "arith_mc.jsonl", arith_mc_rows(rng, test))
    for task, file, text, what in (
            ("studio_general_probe", "general_probe.jsonl", "{{question}}",
             "The studio's general probe: the last word of held-out corpus sentences (4 choices)."),
            ("studio_arith_mc", "arith_mc.jsonl", "Question: {{question}}\\nAnswer:",
             "Held-out arithmetic as multiple choice (4 numbers).")):
        (eval_dir / f"{task}.yaml").write_text(EVAL_TASK_YAML.format(what=what, task=task, file=file, text=text))


def tokenizer_texts(files: dict[str, list[dict]]):
    """Every string the studio ships, in the shapes models will see them."""
    from studio.tokenizer import IM_END, IM_START

    for name, rows in files.items():
        for row in rows:
            if "text" in row:
                yield row["text"]
            elif "messages" in row:
                yield "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
                              for m in row["messages"])
            elif "system" in row:
                yield row["system"] + "\n" + row["chat"]
            elif "chosen" in row:
                yield f"{row['prompt']}\n{row['chosen']}\n{row['rejected']}"
            elif "completion" in row:
                yield f"{row['prompt']}\n{row['completion']}"
            else:
                yield f"{row['prompt']}\n{row['answer']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets",
                        help="folder to write data/ and tokenizer/ into (default: assets/)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-tokenizer", action="store_true", help="write the data only")
    args = parser.parse_args(argv)

    files = make_data(args.out, args.seed)
    for name, rows in files.items():
        print(f"{name:28s} {len(rows):6d} rows")
    if not args.no_tokenizer:
        from studio.tokenizer import train_tokenizer

        tok = train_tokenizer(tokenizer_texts(files), VOCAB_SIZE, args.out / "tokenizer")
        print(f"tokenizer: {len(tok)} tokens -> {args.out / 'tokenizer'}")


if __name__ == "__main__":
    main()
