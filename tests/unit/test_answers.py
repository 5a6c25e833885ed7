"""Question-answer pairs (distill.answers): read with every bad row counted and rejected with its reason."""

import json

from distill.answers import read_answers

def test_read_answers_counts_and_rejects(tmp_path):
    from distill.data import Rejects

    rows = [{"_id": "q1", "answers": ["paris", " "]}, {"_id": "q2", "answer": "london"}, {"_id": "q3"},
            {"_id": "q4", "answers": []}, {"_id": "q5", "answers": [3]}, {"_id": "nope", "answers": ["x"]},
            {"_id": "q1", "answers": ["again"]}, {"answers": ["no id"]}]
    lines = [json.dumps(r) for r in rows] + ["{broken", ""]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
    queries = {f"q{i}": "text" for i in range(1, 6)}
    rej = Rejects()
    answers, counts = read_answers(tmp_path / "qa.jsonl", queries, rej)
    assert answers == {"q1": ["paris"], "q2": ["london"]}
    assert counts == {"rows": 9, "answered": 2, "no_answers": 1, "rejected": 6}
    assert rej.counts() == {"bad_answers": 2, "unknown_query": 1, "duplicate_id": 1, "missing_id": 1, "bad_json": 1}
