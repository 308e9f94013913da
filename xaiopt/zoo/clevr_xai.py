"""CLEVR-XAI (Arras, Osman & Samek 2022): visual questions on CLEVR images with ground-truth masks.

:func:`load_clevr_xai` reads the samples a Relation Network (:mod:`xaiopt.zoo.relation_network`)
answers; as a study's dataset, ``clevr_xai:PATH`` (:func:`load_clevr_xai_split`, ``data.split`` one of
:data:`SPLITS`), its questions are the evaluation batch's fixed input (``EvalData.fixed``).

``<path>`` holds, as the benchmark's own evaluation code reads them:

- the questions, CLEVR's question JSON ``{"questions": [{"question_index", "image" (or
  "image_filename"), "question", "answer", ...}]}``: ``CLEVR_simple_questions.json`` (CLEVR-XAI-simple)
  or ``CLEVR_complex_questions.json`` (CLEVR-XAI-complex), or a file named by ``question_file``;
- the images, ``<image>.png`` in ``images/`` (or beside the questions);
- the ground truth of one kind, a directory of ``<question_index>.npy`` boolean masks, or one ``.npy``
  file holding a dict ``{question_index: mask}`` (a pickle: read only files you trust), whose name
  contains the kind: ``single_object`` or ``all_objects`` for simple questions, ``unique``,
  ``unique_first_nonempty``, ``union`` or ``all_objects`` for complex ones. The benchmark leaves a
  mask out where a question has no target object; such questions are skipped.

Images are resized to ``image_size`` squared (the Relation Network's 128 x 128; CLEVR renders
480 x 320) and masks, resized with nearest neighbours where their size differs. Questions become word
indices: lower case, words and the punctuation ``? ; ,`` as tokens, looked up in ``vocab`` (the
model's own word -> index JSON, index 0 = padding) or, without one, the sorted words of the file from 1
(right only for a model trained with that vocabulary: random weights). Answers index ``answers`` (the
model's list, a JSON file) or CLEVR's 28 answers in :data:`CLEVR_ANSWERS`' order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.transforms import Normalization, open_image

QUESTION_FILES = {"simple": "CLEVR_simple_questions.json", "complex": "CLEVR_complex_questions.json"}
GROUND_TRUTHS = {
    "simple": ("single_object", "all_objects"),
    "complex": ("unique", "unique_first_nonempty", "union", "all_objects"),
}
# CLEVR's answer vocabulary: yes/no, counts, colours, shapes, materials, sizes
CLEVR_ANSWERS = (
    "yes", "no", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
    "gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow",
    "cube", "sphere", "cylinder", "rubber", "metal", "small", "large",
)
# data.split of the dataset scheme ``clevr_xai:PATH``: the questions and the kind of ground truth
SPLITS = {
    "simple": ("simple", "single_object"), "simple_all_objects": ("simple", "all_objects"),
    "complex": ("complex", "unique"), "complex_first_nonempty": ("complex", "unique_first_nonempty"),
    "complex_union": ("complex", "union"), "complex_all_objects": ("complex", "all_objects"),
}
VOCAB_FILE = "vocab.json"
_TOKENS = re.compile(r"[a-z0-9]+|[?;,]")
# pixels in [0, 1]: the Relation Network reads images unnormalised
_UNIT = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class VqaData:
    """The evaluation batch (images, answers as labels, masks) plus each sample's question.

    ``questions``: (N, L) int64 word indices, 0-padded on the right; ``question_index``: the
    benchmark's ids, for reading its files back; ``texts``: the questions as written.
    """

    data: EvalData
    questions: torch.Tensor
    question_index: tuple[int, ...]
    texts: tuple[str, ...]


def tokenize(question: str) -> list[str]:
    """``"Is the cube red?"`` -> ``['is', 'the', 'cube', 'red', '?']``."""
    return _TOKENS.findall(question.lower())


def load_clevr_xai(
    path: str | Path,
    *,
    n: int,
    seed: int = 0,
    questions: str = "simple",
    ground_truth: str | None = None,
    question_file: str | None = None,
    image_size: int = 128,
    vocab: str | Path | None = None,
    answers: Sequence[str] | str | Path | None = None,
    normalization: Normalization = _UNIT,
) -> VqaData:
    """``n`` questions drawn with ``seed`` among those with a mask of kind ``ground_truth`` (default:
    ``single_object`` for simple questions, ``unique`` for complex ones); see the module docstring.

    Example:
        >>> vqa = load_clevr_xai("/data/CLEVR-XAI", n=100)               # doctest: +SKIP
        >>> vqa.data.x.shape, vqa.questions.shape, vqa.data.masks.dtype  # doctest: +SKIP
        (torch.Size([100, 3, 128, 128]), torch.Size([100, 21]), torch.bool)
    """
    label = f"clevr_xai:{path}"
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset {label!r}: {str(root)!r} is not a directory; valid: the CLEVR-XAI folder with "
                          f"{' or '.join(QUESTION_FILES.values())}, the images and the ground-truth masks")
    if questions not in QUESTION_FILES:
        raise ConfigError(f"dataset {label!r}: questions={questions!r} is invalid; valid: {', '.join(QUESTION_FILES)}")
    kinds = GROUND_TRUTHS[questions]
    kind = ground_truth or kinds[0]
    if kind not in kinds:
        raise ConfigError(f"dataset {label!r}: ground_truth={kind!r} is not one of the {questions} questions' "
                          f"masks; valid: {', '.join(kinds)}")
    if n < 1:
        raise ConfigError(f"dataset {label!r}: n={n} is invalid; valid: at least 1 question")
    records = _questions(root, question_file or QUESTION_FILES[questions], label)
    masks = _ground_truth(root, kind, label)
    usable = [q for q in records if int(q["question_index"]) in masks]
    if len(usable) < n:
        raise ConfigError(f"dataset {label!r}: {n} questions wanted, but only {len(usable)} of {len(records)} have a "
                          f"{kind} mask; valid: n <= {len(usable)}")
    order = np.random.default_rng(seed).permutation(len(usable))[:n]
    chosen = [usable[i] for i in sorted(order)]

    if answers is None:
        answer_names: tuple[str, ...] = CLEVR_ANSWERS
    elif isinstance(answers, (str, Path)):
        answer_names = tuple(_json_list(answers, label, "answers"))
    else:
        answer_names = tuple(str(a) for a in answers)
    answer_index = {a: i for i, a in enumerate(answer_names)}
    words = _vocabulary(vocab, records, label)
    images, gts, tokens, targets = [], [], [], []
    for q in chosen:
        qid = int(q["question_index"])
        answer = str(q.get("answer"))
        if answer not in answer_index:
            raise ConfigError(f"dataset {label!r}: question {qid} has the answer {answer!r}, which is not in the "
                              f"answers ({', '.join(answer_names[:8])}, ...); valid: give the model's answer list")
        targets.append(answer_index[answer])
        text = tokenize(str(q["question"]))
        missing = [w for w in text if w not in words]
        if missing:
            raise ConfigError(f"dataset {label!r}: question {qid} has the word {missing[0]!r}, which the vocabulary "
                              f"does not hold; valid: a vocabulary with every word of the questions")
        tokens.append([words[w] for w in text])
        images.append(_image(root, q, image_size, label))
        gts.append(_mask(masks[qid], image_size, qid, label))
    width = max(len(t) for t in tokens)
    question_tensor = torch.zeros(len(tokens), width, dtype=torch.int64)
    for row, t in enumerate(tokens):
        question_tensor[row, :len(t)] = torch.tensor(t, dtype=torch.int64)
    low, high = normalization.bounds()
    data = EvalData(
        x=normalization(torch.stack(images)).float(),
        y=torch.tensor(targets, dtype=torch.int64),
        masks=torch.stack(gts).unsqueeze(1),
        low=low.float(), high=high.float(),
        num_classes=len(answer_names), class_names=answer_names, fixed=(question_tensor,),
    )
    return VqaData(data=data, questions=question_tensor,
                   question_index=tuple(int(q["question_index"]) for q in chosen),
                   texts=tuple(str(q["question"]) for q in chosen))


def _questions(root: Path, name: str, label: str) -> list[dict[str, Any]]:
    file = root / name
    if not file.is_file():
        found = sorted(p.name for p in root.glob("*.json"))
        raise ConfigError(f"dataset {label!r}: no question file {name!r} in {str(root)!r} (JSON files there: "
                          f"{', '.join(found) or 'none'}); valid: {', '.join(QUESTION_FILES.values())}")
    try:
        document = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"dataset {label!r}: cannot read {str(file)!r} as JSON ({error})") from None
    records = document.get("questions") if isinstance(document, dict) else None
    if not isinstance(records, list) or not records:
        raise ConfigError(f"dataset {label!r}: {str(file)!r} has no questions; valid: CLEVR's question JSON "
                          f"{{\"questions\": [...]}}")
    for q in records:
        missing = [k for k in ("question_index", "question", "answer") if not isinstance(q, dict) or k not in q]
        if missing or not ("image" in q or "image_filename" in q):
            raise ConfigError(f"dataset {label!r}: a question of {file.name} lacks "
                              f"{', '.join(missing) or 'image'}; valid: question_index, image, question, answer")
    return records


def _ground_truth(root: Path, kind: str, label: str) -> dict[int, Any]:
    """Question index -> mask (a path to load, or the array), from the one file or folder of ``kind``."""
    def matches(name: str) -> bool:
        stem = name.lower().removesuffix(".npy")
        if kind == "unique":
            return "unique" in stem and "first_nonempty" not in stem
        return kind in stem

    candidates = [p for p in root.iterdir() if matches(p.name) and (p.is_dir() or p.suffix == ".npy")]
    if len(candidates) != 1:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() or p.suffix == ".npy")
        what = "no" if not candidates else f"{len(candidates)} ({', '.join(sorted(p.name for p in candidates))})"
        raise ConfigError(f"dataset {label!r}: {what} ground truth of kind {kind!r} in {str(root)!r} (there: "
                          f"{', '.join(found) or 'nothing'}); valid: one folder of <question_index>.npy or one "
                          f".npy file whose name contains {kind!r}")
    source = candidates[0]
    if source.is_dir():
        masks: dict[int, Any] = {}
        for file in source.glob("*.npy"):
            if file.stem.isdigit():
                masks[int(file.stem)] = file
        return masks
    try:
        loaded = np.load(source, allow_pickle=True)[()]
    except (OSError, ValueError) as error:
        raise ConfigError(f"dataset {label!r}: cannot read {str(source)!r} ({error})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"dataset {label!r}: {str(source)!r} holds a {type(loaded).__name__}; valid: a dict "
                          f"{{question_index: mask}}")
    return {int(k): v for k, v in loaded.items()}


def _mask(source: Any, size: int, qid: int, label: str) -> torch.Tensor:
    mask = np.load(source) if isinstance(source, Path) else np.asarray(source)
    if mask.ndim != 2:
        raise ConfigError(f"dataset {label!r}: the mask of question {qid} has shape {mask.shape}; valid: (H, W)")
    mask = mask.astype(bool)
    if mask.shape != (size, size):
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
    return torch.from_numpy(mask.copy())


def _image(root: Path, q: dict[str, Any], size: int, label: str) -> torch.Tensor:
    name = str(q.get("image_filename") or f"{q['image']}.png")
    for folder in (root / "images", root):
        if (folder / name).is_file():
            picture = open_image(folder / name, "RGB", label).resize((size, size), Image.BILINEAR)
            return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
    raise ConfigError(f"dataset {label!r}: question {q['question_index']} is about image {name!r}, which is in "
                      f"neither {str(root / 'images')!r} nor {str(root)!r}; valid: the question file of these images")


def _json_list(source: str | Path, label: str, what: str) -> list[str]:
    try:
        value = json.loads(Path(source).expanduser().read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"dataset {label!r}: cannot read {what} file {str(source)!r} ({error})") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"dataset {label!r}: {what} file {str(source)!r} must be a JSON list of strings")
    return value


def _vocabulary(source: str | Path | None, records: list[dict[str, Any]], label: str) -> dict[str, int]:
    if source is None:
        words = sorted({w for q in records for w in tokenize(str(q["question"]))})
        return {w: i + 1 for i, w in enumerate(words)}
    try:
        value = json.loads(Path(source).expanduser().read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"dataset {label!r}: cannot read vocabulary file {str(source)!r} ({error})") from None
    if (not isinstance(value, dict) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values())):
        raise ConfigError(f"dataset {label!r}: vocabulary file {str(source)!r} must be a JSON object word -> index "
                          f"(indices from 1; 0 is padding)")
    return {str(k): int(v) for k, v in value.items()}


def load_clevr_xai_split(path: str | Path, *, n: int, seed: int, split: str | None, image_size: int | None,
                         answers: Sequence[str] | None, normalization: Normalization | None) -> EvalData:
    """The dataset scheme ``clevr_xai:PATH``: ``split`` one of :data:`SPLITS` (default ``simple``), the
    model's vocabulary from ``PATH/vocab.json`` when there is one, ``answers`` the model's answer list
    (``data.classes``); the questions are the batch's fixed input."""
    label = f"clevr_xai:{path}"
    chosen = split or "simple"
    if chosen not in SPLITS:
        raise ConfigError(f"data.split={chosen!r} is invalid for dataset {label!r}; valid: {', '.join(SPLITS)}")
    questions, kind = SPLITS[chosen]
    vocab = Path(path).expanduser() / VOCAB_FILE
    return load_clevr_xai(path, n=n, seed=seed, questions=questions, ground_truth=kind,
                          image_size=image_size or 128, vocab=vocab if vocab.is_file() else None, answers=answers,
                          normalization=normalization or _UNIT).data
