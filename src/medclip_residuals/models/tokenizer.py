"""A word-level BERT tokenizer made from the demo corpus (for the `demo` encoder profile).

The vocabulary is every lower-cased word (BERT's basic split: words and punctuation) of the
training reports, plus the words of the phenotype phrases and prompts the analysis embeds,
so that the texts the project asks about are never unknown words.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from medclip import constants as medclip_constants
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import BasicTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Texts the analysis embeds besides the reports: prompts, CheXpert names, MedCLIP's location
# phrases and the research slides' locations.
PROMPT_TEXTS: tuple[str, ...] = (
    "there is", "there is no", "no finding", "the phenotype are", "the phenotypes are",
    "left right upper lower middle lung zone base near the heart", "some on the in of and with",
    *medclip_constants.CHEXPERT_TASKS,
    *(
        phrase
        for prompts in medclip_constants.CHEXPERT_CLASS_PROMPTS.values()
        for phrases in prompts.values()
        for phrase in phrases
    ),
)


def corpus_words(texts: Iterable[str], lowercase: bool = True) -> list[str]:
    """The sorted distinct words of `texts`, split the way BERT's basic tokenizer splits."""
    splitter = BasicTokenizer(do_lower_case=lowercase)
    words: set[str] = set()
    for text in texts:
        if text:
            words.update(splitter.tokenize(str(text)))
    return sorted(words - set(SPECIAL_TOKENS))


def build_word_tokenizer(
    texts: Iterable[str], extra_texts: Iterable[str] = PROMPT_TEXTS, lowercase: bool = True, max_length: int = 64
) -> BertTokenizerFast:
    """Build a BERT tokenizer whose vocabulary is the words of `texts` and `extra_texts`.

    Unknown words become [UNK]; `max_length` is the tokenizer's model_max_length.
    """
    words = corpus_words([*texts, *extra_texts], lowercase=lowercase)
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.txt"
        vocab_file.write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=lowercase, tokenize_chinese_chars=False)
    tokenizer.model_max_length = max_length
    return tokenizer
