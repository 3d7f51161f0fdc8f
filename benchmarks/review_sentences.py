"""Movie-review sentences for an SST-2 transfer set: unlabelled IMDB reviews cut into sentences and tokenised the
way SST-2's texts are (lower case, punctuation and clitics split off), one a line.

    python benchmarks/review_sentences.py ../shared/data/imdb/unsup.tsv.gz /tmp/imdb-sentences.txt --size 40000

SST-2's sentences come from movie reviews too (rottentomatoes.com), so these stand in for what a user with a few
hundred labelled reviews usually has plenty of: more unlabelled text from the same domain. Only the `unsup`
split (no labels) is read; nothing of IMDB's test split or of SST-2 is used. Sentences of 4-50 words are kept,
in file order, without duplicates.
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TOKENS = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b|[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


def sst2_style(sentence: str) -> str:
    """`I didn't like it.` -> `i did n't like it .` (SST-2's tokenisation, as in Kim 2014's files)."""
    text = sentence.lower().replace("n't", " n't")
    return " ".join(TOKENS.findall(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a gzip TSV with a `text` column (IMDB's unsup.tsv.gz)")
    parser.add_argument("out", type=Path, help="text file to write, one sentence a line")
    parser.add_argument("--size", type=int, default=40_000, help="sentences to keep (default: %(default)s)")
    args = parser.parse_args()
    seen: dict[str, None] = {}  # a dict keeps the file order
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        next(handle)  # the header
        for line in handle:
            review = line.split("\t", 1)[0].replace("<br />", " ")
            for sentence in SENTENCE_END.split(review):
                text = sst2_style(sentence)
                if 4 <= len(text.split()) <= 50 and text not in seen:
                    seen[text] = None
            if len(seen) >= args.size:
                break
    args.out.write_text("".join(text + "\n" for text in list(seen)[:args.size]), encoding="utf-8")
    print(f"{min(len(seen), args.size)} sentences -> {args.out}")


if __name__ == "__main__":
    main()
