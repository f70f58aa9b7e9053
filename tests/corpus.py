"""Texts shared by the tests: training text for the tiny tokenizers, and the parity corpus.

The parity corpus covers punctuation, accents, emoji, CJK, runs of spaces, newlines, tabs, and texts
longer than the tiny models' max length (those need ``stride``); BLANK_TEXTS are the empty and
whitespace-only texts (apart, since some tests read the corpus as lines of a file).
"""

TRAIN_TEXT = [
    "Maria loves Groningen and Amsterdam.",
    "John Smith works at Acme Corp. in New York City!",
    "The quick brown fox jumps over the lazy dog.",
    "Élodie García visited São Paulo, Zürich and Kraków last année.",
    "I ❤️ pizza 🍕 and coffee ☕ — don't you?",
    "東京は日本の首都です。北京も大きい。",
    "Call me at +1-555-0100 or mail jane.doe@example.com tomorrow.",
    "He said: 'It's fine', then left... (really?)",
    "Barack Obama was born in Honolulu, Hawaii.",
    "Angela Merkel met Emmanuel Macron in Paris on Monday.",
    "The movie was great, the acting superb; the plot? Not so much.",
    "New York-based company Apple Inc. released a new iPhone.",
    "note: take a note of the musical note.",
    "An enchanting, enchanted evening in Groningen.",
    "tweet @user #hashtag http://t.co/abc lol :) !!!",
] * 20

PARITY_TEXTS = [
    "Maria loves Groningen.",
    "John Smith works at Acme Corp. in New York City!",
    "Élodie García visited São Paulo and Zürich.",
    "I ❤️ pizza 🍕 and coffee ☕",
    "東京は日本の首都です。",
    "Call   me    at  +1-555-0100  or  jane.doe@example.com",
    "First line\nSecond line with Paris\n\nThird",
    "tab\tseparated\tBarack\tObama",
    "He said: 'It's fine', then left... (really?)",
    "a",
    "Angela Merkel met Emmanuel Macron in Paris on Monday. " * 12,  # longer than max length
]

BLANK_TEXTS = ["", " ", "  \t\n  "]

#: Sentences for checks of MiniLM embeddings (not the exporter's validation samples).
SENTENCES = [
    "A man is playing a guitar on stage.",
    "The new movie is awesome and everybody should watch it.",
    "Stock markets fell sharply on Tuesday after the announcement.",
    "How do I reset my password?",
    "Cats sleep for most of the day.",
]
