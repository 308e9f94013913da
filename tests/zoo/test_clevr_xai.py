"""CLEVR-XAI read from a tiny folder the tests write in its layout: questions JSON, images, and the
ground truth both ways the benchmark's evaluation code stores it (a folder of <question_index>.npy,
one .npy dict)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaiopt.canonize import canonize
from xaiopt.errors import ConfigError
from xaiopt.zoo.clevr_xai import CLEVR_ANSWERS, load_clevr_xai, tokenize
from xaiopt.zoo.relation_network import build_relation_network

# image -> objects (colour, (row0, col0, row1, col1) in a 40 x 60 image)
SCENES = {
    "CLEVR_unique_000000": [("red", (5, 5, 15, 15)), ("blue", (20, 30, 35, 50))],
    "CLEVR_unique_000001": [("green", (10, 40, 30, 55))],
    "CLEVR_unique_000002": [("yellow", (2, 2, 12, 20)), ("red", (25, 10, 38, 25))],
}
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 180, 30), "yellow": (220, 220, 40)}
# question_index, image, question, answer, target object (None: no mask, as for "no" answers)
QUESTIONS = [
    (0, "CLEVR_unique_000000", "What color is the small cube?", "red", 0),
    (1, "CLEVR_unique_000000", "Is there a large sphere; is it blue?", "yes", 1),
    (2, "CLEVR_unique_000001", "How many green cylinders are there?", "1", 0),
    (3, "CLEVR_unique_000002", "What material is the yellow thing?", "metal", 0),
    (4, "CLEVR_unique_000002", "Is there a purple cube?", "no", None),
    (5, "CLEVR_unique_000002", "What size is the red cube?", "large", 1),
]


def _mask(image: str, obj: int | None, *, every: bool = False) -> np.ndarray:
    mask = np.zeros((40, 60), dtype=bool)
    for i, (_, (r0, c0, r1, c1)) in enumerate(SCENES[image]):
        if every or i == obj:
            mask[r0:r1, c0:c1] = True
    return mask


def write_clevr_xai(root: Path, *, dict_file: bool = False) -> Path:
    (root / "images").mkdir(parents=True)
    for image, objects in SCENES.items():
        pixels = np.full((40, 60, 3), 64, dtype=np.uint8)  # CLEVR's grey background
        for colour, (r0, c0, r1, c1) in objects:
            pixels[r0:r1, c0:c1] = COLOURS[colour]
        Image.fromarray(pixels).save(root / "images" / f"{image}.png")
    records = [{"question_index": i, "image": img, "question": text, "answer": answer, "program": []}
               for i, img, text, answer, _ in QUESTIONS]
    (root / "CLEVR_simple_questions.json").write_text(json.dumps({"info": {}, "questions": records}))
    single = root / "ground_truth_simple_questions_single_object"
    single.mkdir()
    for i, img, _, _, obj in QUESTIONS:
        if obj is not None:
            np.save(single / f"{i}.npy", _mask(img, obj))
    every = {i: _mask(img, None, every=True) for i, img, _, _, obj in QUESTIONS if obj is not None}
    if dict_file:
        np.save(root / "ground_truth_simple_questions_all_objects.npy", every, allow_pickle=True)
    else:
        (root / "ground_truth_simple_questions_all_objects").mkdir()
        for i, m in every.items():
            np.save(root / "ground_truth_simple_questions_all_objects" / f"{i}.npy", m)
    return root


@pytest.fixture
def clevr(tmp_path):
    return write_clevr_xai(tmp_path / "clevr")


def test_questions_images_answers_and_masks(clevr):
    vqa = load_clevr_xai(clevr, n=5, image_size=40)
    # question 4 has no mask (its answer is "no"): the 5 others, in file order
    assert vqa.question_index == (0, 1, 2, 3, 5)
    data = vqa.data
    assert data.x.shape == (5, 3, 40, 40) and data.masks.shape == (5, 1, 40, 40) and data.masks.dtype == torch.bool
    assert data.y.tolist() == [CLEVR_ANSWERS.index(a) for a in ("red", "yes", "1", "metal", "large")]
    assert data.num_classes == 28 and data.class_names == CLEVR_ANSWERS
    # masks resized with nearest neighbours from 40 x 60 to 40 x 40
    expected = np.array(Image.fromarray(_mask("CLEVR_unique_000000", 1)).resize((40, 40), Image.NEAREST))
    assert torch.equal(data.masks[1, 0], torch.from_numpy(expected))
    # the masked object's pixels carry its colour in the resized image (pixels in [0, 1], unnormalised)
    inside = data.x[0][:, data.masks[0, 0]]
    assert torch.allclose(inside.mean(1), torch.tensor(COLOURS["red"], dtype=torch.float32) / 255, atol=0.05)
    assert float(data.low.max()) == 0.0 and float(data.high.min()) == 1.0
    # word indices from the file's sorted words, 0-padded on the right
    words = sorted({w for _, _, text, _, _ in QUESTIONS for w in tokenize(text)})
    row = [words.index(w) + 1 for w in tokenize("What color is the small cube?")]
    assert vqa.questions[0, :len(row)].tolist() == row and vqa.questions[0, len(row):].eq(0).all()
    assert tokenize("Is there a large sphere; is it blue?") == ["is", "there", "a", "large", "sphere", ";", "is",
                                                                   "it", "blue", "?"]


def test_seeded_subsets_and_the_all_objects_mask_from_one_dict_file(tmp_path):
    root = write_clevr_xai(tmp_path / "c", dict_file=True)
    a = load_clevr_xai(root, n=3, seed=0, ground_truth="all_objects", image_size=40)
    assert a.question_index == load_clevr_xai(root, n=3, seed=0, ground_truth="all_objects",
                                              image_size=40).question_index
    subsets = {load_clevr_xai(root, n=3, seed=s, ground_truth="all_objects", image_size=40).question_index
               for s in range(6)}
    assert len(subsets) > 1
    qid = a.question_index[0]
    image = QUESTIONS[qid][1]
    expected = np.array(Image.fromarray(_mask(image, None, every=True)).resize((40, 40), Image.NEAREST))
    assert torch.equal(a.data.masks[0, 0], torch.from_numpy(expected))


def test_the_relation_network_answers_them_and_is_canonized_on_them(clevr):
    vqa = load_clevr_xai(clevr, n=4, image_size=64)
    model = build_relation_network(seed=0, image_size=64).double().eval()
    x, q = vqa.data.x.double(), vqa.questions
    with torch.no_grad():
        logits = model(x, q)
    assert logits.shape == (4, 28) and torch.isfinite(logits).all()
    twin, report = canonize(model, (x, q))
    assert report.canonized and report.remaining_batch_norms == [] and report.batch_norms_before == 4
    with torch.no_grad():
        assert ((twin(x, q) - logits).abs().max() / logits.abs().max()) < 1e-10


def test_a_vocabulary_and_answer_list_of_the_model(clevr, tmp_path):
    words = {w: i + 10 for i, w in enumerate(sorted({w for _, _, t, _, _ in QUESTIONS for w in tokenize(t)}))}
    (tmp_path / "vocab.json").write_text(json.dumps(words))
    answers = ["no", "yes", "red", "1", "metal", "large", "blue"]
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    vqa = load_clevr_xai(clevr, n=5, image_size=40, vocab=tmp_path / "vocab.json", answers=tmp_path / "answers.json")
    assert vqa.data.y.tolist() == [2, 1, 3, 4, 5] and vqa.data.class_names == tuple(answers)
    assert vqa.questions[0, 0].item() == words["what"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda root: (root / "CLEVR_simple_questions.json").unlink(),
     r"no question file 'CLEVR_simple_questions.json' in .* \(JSON files there: none\); valid: "),
    (lambda root: (root / "images" / "CLEVR_unique_000001.png").unlink(),
     r"question 2 is about image 'CLEVR_unique_000001.png', which is in neither .*; valid: the question file of "
     r"these images"),
    (lambda root: (root / "ground_truth_simple_questions_single_object").rename(root / "gt_other"),
     r"no ground truth of kind 'single_object' in .*; valid: one folder of <question_index>.npy or one .npy file"),
    (lambda root: (root / "ground_truth_simple_questions_single_object").rename(
        root / "ground_truth_single_object_and_all_objects"),
     r"2 \(ground_truth_simple_questions_all_objects, ground_truth_single_object_and_all_objects\) ground truth of "
     r"kind 'all_objects'"),
])
def test_mistakes_are_one_line(clevr, change, message):
    change(clevr)
    kind = "all_objects" if "2 \\(" in message else None
    with pytest.raises(ConfigError, match=message) as err:
        load_clevr_xai(clevr, n=5, image_size=40, ground_truth=kind)
    assert "\n" not in str(err.value)


def test_settings_that_do_not_fit_are_one_line(clevr, tmp_path):
    cases = [
        (dict(n=6), r"6 questions wanted, but only 5 of 6 have a single_object mask; valid: n <= 5"),
        (dict(n=2, questions="complex"), r"no question file 'CLEVR_complex_questions.json'"),
        (dict(n=2, ground_truth="union"), r"ground_truth='union' is not one of the simple questions' masks; valid: "
                                          r"single_object, all_objects"),
        (dict(n=2, questions="hard"), r"questions='hard' is invalid; valid: simple, complex"),
    ]
    (tmp_path / "v.json").write_text(json.dumps({"what": 1}))
    (tmp_path / "a.json").write_text(json.dumps(["yes", "no"]))
    cases += [
        (dict(n=5, vocab=tmp_path / "v.json"), r"question \d+ has the word '\w+', which the vocabulary does not hold"),
        (dict(n=5, answers=tmp_path / "a.json"), r"question 0 has the answer 'red', which is not in the answers"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            load_clevr_xai(clevr, image_size=40, **kwargs)
        assert "\n" not in str(err.value)
