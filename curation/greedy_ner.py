"""spaCy's greedy NER decoding, vectorized over a batch of docs with numpy.

spaCy's `ner` pipe (a transition-based parser with BILUO moves) decodes one token at a time per doc in
Cython, and on this kind of CPU most of its time goes to checking each of its ~74 moves' validity
per token. The decision at a token depends only on the token's vector, whether an entity is open and
where it began, so all docs of a batch can take their step t together: the same precomputed hidden
features (spaCy's `lower` layer), the same maxout and output layer (`upper`), the same validity rules
(`spacy/pipeline/_parser_internals/ner.pyx`: B and I need a next token, B and U never on whitespace,
I and L only continue the open entity's label, O only outside an entity) and the same first-best
argmax. `GreedyNer.supports` says whether a loaded pipeline has that shape (greedy, own tok2vec, three
state features, maxout); `tests/test_greedy_ner.py` checks the entities equal `nlp.pipe`'s. The NER's
matrix products go through numpy's BLAS (OpenBLAS's AVX-512 kernels run them ~1.8x faster than
thinc's blis here; a product may differ in its last bits, and the entities stay spaCy's on the test
texts)."""

from __future__ import annotations

from typing import Any

import numpy as np
from spacy.attrs import IS_SPACE
from spacy.tokens import Doc
from thinc.api import NumpyOps

Span = tuple[int, int, str]  # token start, token end (exclusive), label


class BlasOps(NumpyOps):
    """thinc's numpy ops with the matrix product of numpy's BLAS."""

    def gemm(
        self, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None, trans1: bool = False, trans2: bool = False
    ) -> np.ndarray:
        return np.matmul(x.T if trans1 else x, y.T if trans2 else y, out=out)


class GreedyNer:
    """The `ner` pipe of `nlp`, decoded for a whole batch at once (see the module docstring)."""

    def __init__(self, nlp: Any) -> None:
        ner = nlp.get_pipe("ner")
        model = ner.model
        ops = BlasOps()
        for layer in model.walk():
            layer.ops = ops
        self.tok2vec, self.lower = model.get_ref("tok2vec"), model.get_ref("lower")
        upper = model.get_ref("upper")
        self.W, self.b = upper.get_param("W").T.copy(), upper.get_param("b")
        self.bias = self.lower.get_param("b")
        names = _moves(ner)
        self.labels = sorted({n[2:] for n in names if len(n) > 2})
        label_id = {label: k for k, label in enumerate(self.labels)}
        kinds = np.array([n[0] for n in names])
        labels = np.array([label_id.get(n[2:], -1) for n in names])
        # closed[last, space]: moves valid with no entity open; opened[last, label]: with one open
        self.closed = np.zeros((2, 2, len(names)), bool)
        for last in (0, 1):
            for space in (0, 1):
                self.closed[last, space] = (
                    ((kinds == "B") & (not last) & (not space)) | ((kinds == "U") & (not space)) | (kinds == "O")
                ) & ((labels >= 0) | (kinds == "O"))
        self.opened = np.zeros((2, len(self.labels), len(names)), bool)
        for last in (0, 1):
            for k in range(len(self.labels)):
                self.opened[last, k] = (labels == k) & (((kinds == "I") & (not last)) | (kinds == "L"))
        self.kinds, self.move_labels = kinds, labels

    @staticmethod
    def supports(nlp: Any) -> bool:
        """Whether `nlp`'s NER is one this decoder reproduces: greedy (beam width 1), with its own
        token-to-vector layer, spaCy's three NER state features, a maxout hidden layer and an output
        layer, every class seen, BILUO moves."""
        if "ner" not in nlp.pipe_names:
            return False
        ner = nlp.get_pipe("ner")
        model = ner.model
        if model.name != "parser_model" or ner.cfg.get("beam_width", 1) != 1:
            return False
        if not model.attrs.get("has_upper") or model.attrs.get("unseen_classes"):
            return False
        if "listener" in model.get_ref("tok2vec").name:
            return False
        lower = model.get_ref("lower")
        if lower.name != "precomputable_affine" or lower.get_dim("nF") != 3 or lower.get_dim("nP") < 2:
            return False
        names = _moves(ner)
        if len(names) != model.get_ref("upper").get_dim("nO"):
            return False
        return all(n in ("O", "U-") or (n[:2] in ("B-", "I-", "L-", "U-") and len(n) > 2) for n in names)

    def __call__(self, docs: list[Doc]) -> list[list[Span]]:
        """The entities of each doc, as `nlp.pipe` would set them on `doc.ents`."""
        out: list[list[Span]] = [[] for _ in docs]
        todo = [k for k, d in enumerate(docs) if len(d)]
        if not todo:
            return out
        tokvecs = self.tok2vec.predict([docs[k] for k in todo])
        feats = self.lower.predict(tokvecs)  # (tokens + 1, 3, hidden, pieces); row 0 is the padding
        lengths = np.array([len(docs[k]) for k in todo])
        spaces = np.concatenate([docs[k].to_array(IS_SPACE) for k in todo]).astype(np.intp)
        for row, spans in zip(todo, self._decode(feats, lengths, spaces), strict=True):
            out[row] = spans
        return out

    def _decode(self, feats: np.ndarray, lengths: np.ndarray, spaces: np.ndarray) -> list[list[Span]]:
        order = np.argsort(-lengths, kind="stable")  # longest first: the docs still going are a prefix
        n = lengths[order]
        rows = (np.concatenate([[0], np.cumsum(lengths)[:-1]]) + 1)[order]  # first token's row in feats
        f0, f1, f2 = feats[:, 0], feats[:, 1], feats[:, 2]
        opened = np.zeros(len(n), bool)
        label = np.zeros(len(n), np.intp)
        start = np.zeros(len(n), np.intp)
        found: list[list[Span]] = [[] for _ in n]
        for t in range(int(n[0])):
            k = int(np.count_nonzero(n > t))
            op, lab, st, at = opened[:k], label[:k], start[:k], rows[:k] + t
            hidden = f0[at] + f1[np.where(op, rows[:k] + st, 0)] + f2[np.where(op, at - 1, 0)]
            hidden += self.bias
            scores = hidden.max(axis=-1) @ self.W + self.b
            last = (n[:k] == t + 1).astype(np.intp)
            valid = np.where(op[:, None], self.opened[last, lab], self.closed[last, spaces[at - 1]])
            move = np.where(valid, scores, -np.inf).argmax(axis=1)
            kind, mlab = self.kinds[move], self.move_labels[move]
            for j in np.flatnonzero(kind == "L"):
                found[j].append((int(st[j]), t + 1, self.labels[lab[j]]))
            for j in np.flatnonzero(kind == "U"):
                found[j].append((t, t + 1, self.labels[mlab[j]]))
            begin = kind == "B"
            start[:k] = np.where(begin, t, st)
            label[:k] = np.where(begin, mlab, lab)
            opened[:k] = (op & (kind == "I")) | begin
        result: list[list[Span]] = [[] for _ in n]
        for j, doc in enumerate(order):
            result[doc] = found[j]
        return result


def _moves(ner: Any) -> list[str]:
    """The NER's moves in class order ("B-PERSON", ..., "O"; "U-" is spaCy's move for blocked tokens)."""
    return [ner.moves.get_class_name(i) for i in range(ner.moves.n_moves)]
