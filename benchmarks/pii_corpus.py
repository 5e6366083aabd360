"""An independent labelled PII corpus for the redaction benchmark, built apart from the sample
generator (data/generate_samples.py): its own names from many cultures, places, phone numbers in
national and international formats, cards of several issuers (contiguous, spaced, dashed; valid
Luhn), IBANs of several countries (valid mod 97), addresses in several countries' formats, e-mails,
IPs (also after CJK punctuation), US SSNs; in prose, lists, film credits, quotes and chat turns,
with lower-case names and initials. Each text comes with gold spans (entity, start, end).

    from benchmarks.pii_corpus import make_texts
    texts, gold = make_texts(600, seed=11)
"""

from __future__ import annotations

import random
import string
import unicodedata

Gold = tuple[str, int, int]

NAMES: dict[str, tuple[list[str], list[str]]] = {
    "yoruba_igbo": (
        ["Chinedu", "Ngozi", "Oluwaseun", "Adaeze", "Emeka", "Funmilayo"],
        ["Okafor", "Adeyemi", "Eze", "Balogun", "Nwosu"],
    ),
    "chinese": (["Wei", "Fang", "Jing", "Hao", "Xiaoling", "Jun"], ["Wang", "Zhang", "Liu", "Chen", "Huang"]),
    "japanese": (
        ["Haruto", "Yui", "Sota", "Aoi", "Ren", "Hina"],
        ["Sato", "Tanaka", "Watanabe", "Kobayashi", "Yamamoto"],
    ),
    "korean": (["Min-jun", "Ji-woo", "Seo-yeon", "Do-hyun"], ["Kim", "Park", "Choi", "Jung"]),
    "indian": (
        ["Priya", "Arjun", "Ananya", "Vikram", "Lakshmi", "Rohan"],
        ["Raghunathan", "Mehta", "Iyer", "Chatterjee", "Reddy"],
    ),
    "arabic": (
        ["Omar", "Layla", "Youssef", "Fatima", "Karim", "Nour"],
        ["Haddad", "Nasser", "Al-Masri", "Khoury", "Mansour"],
    ),
    "turkish": (["Emre", "Elif", "Burak", "Zeynep"], ["Yılmaz", "Demir", "Kaya", "Şahin"]),
    "russian": (
        ["Dmitri", "Anastasia", "Sergei", "Olga", "Yekaterina"],
        ["Volkov", "Petrova", "Smirnov", "Ivanova", "Kuznetsov"],
    ),
    "polish": (["Tomasz", "Agnieszka", "Paweł", "Małgorzata"], ["Wiśniewski", "Kowalczyk", "Nowak", "Zieliński"]),
    "finnish": (["Aino", "Eero", "Helmi", "Juho"], ["Virtanen", "Korhonen", "Mäkinen", "Nieminen"]),
    "spanish": (
        ["Alejandro", "Lucía", "Javier", "Carmen", "Pilar"],
        ["Fernández", "Moreno", "Ruiz", "Jiménez", "Navarro"],
    ),
    "brazilian": (
        ["João", "Ana Beatriz", "Thiago", "Larissa"],
        ["da Silva", "Costa", "Oliveira", "dos Santos", "Pereira"],
    ),
    "vietnamese": (["Minh", "Hoa", "Linh", "Quang"], ["Nguyen", "Tran", "Le", "Pham"]),
    "east_african": (["Amani", "Zawadi", "Baraka", "Wanjiru"], ["Mwangi", "Otieno", "Kamau", "Njoroge"]),
    "german_dutch": (
        ["Lukas", "Sanne", "Jürgen", "Femke", "Greta"],
        ["Schneider", "van der Berg", "Hoffmann", "de Vries", "Bauer"],
    ),
    "french": (["Élodie", "Mathieu", "Camille", "Benoît"], ["Lefèvre", "Moreau", "Girard", "Dubois"]),
    "greek": (["Nikos", "Eleni", "Giorgos"], ["Papadopoulos", "Georgiou", "Nikolaidis"]),
    "irish": (["Siobhán", "Ciarán", "Aoife", "Niamh"], ["O'Connor", "Ní Bhriain", "McCarthy", "Gallagher"]),
    "hebrew_persian": (["Noa", "Yonatan", "Dariush", "Shirin"], ["Ben-David", "Levi", "Karimi", "Tehrani"]),
    "filipino_thai": (["Maricel", "Somchai", "Jericho", "Ploy"], ["Santos Reyes", "Srisuk", "Dela Cruz", "Chaiyaporn"]),
}
CITIES = [
    ("Lagos", "Nigeria"),
    ("Chengdu", "China"),
    ("Osaka", "Japan"),
    ("Busan", "South Korea"),
    ("Pune", "India"),
    ("Beirut", "Lebanon"),
    ("Izmir", "Turkey"),
    ("Kazan", "Russia"),
    ("Kraków", "Poland"),
    ("Tampere", "Finland"),
    ("Valencia", "Spain"),
    ("Curitiba", "Brazil"),
    ("Da Nang", "Vietnam"),
    ("Mombasa", "Kenya"),
    ("Rotterdam", "the Netherlands"),
    ("Lyon", "France"),
    ("Thessaloniki", "Greece"),
    ("Galway", "Ireland"),
    ("Haifa", "Israel"),
    ("Cebu", "the Philippines"),
    ("Rio de Janeiro", "Brazil"),
    ("Toronto", "Canada"),
    ("Melbourne", "Australia"),
    ("Leeds", "England"),
    ("Munich", "Germany"),
    ("Chicago", "Illinois"),
]
ADDRESSES = [
    "1187 Maple Grove Road, Asheville, NC 28801",
    "43 Wellington Street, Leeds LS1 4DL",
    "18 rue des Lilas, 69003 Lyon",
    "Calle de Alcalá 142, 28009 Madrid",
    "Lindenstraße 27, 80331 München",
    "Via Garibaldi 8, 10122 Torino",
    "Rua das Flores 230, Curitiba",
    "Keizersgracht 417, 1016 EK Amsterdam",
    "27 Collins Street, Melbourne VIC 3000",
    "ul. Floriańska 14, 31-019 Kraków",
    "88 Queen Street West, Toronto, ON M5H 2M5",
    "Avenida Paulista 1578, São Paulo",
]
PHONES = [  # (country, format with # for random digits)
    ("FR", "+33 6 ## ## ## ##"),
    ("FR", "06 ## ## ## ##"),
    ("FR", "01.##.##.##.##"),
    ("ES", "+34 6## ### ###"),
    ("ES", "6## ### ###"),
    ("ES", "91 ### ## ##"),
    ("DE", "+49 30 ########"),
    ("DE", "030 #######"),
    ("DE", "0151 ########"),
    ("DE", "089/#######"),
    ("UK", "+44 20 7### ####"),
    ("UK", "020 7### ####"),
    ("UK", "07700 9#####"),
    ("BR", "+55 11 9####-####"),
    ("BR", "(11) 9####-####"),
    ("BR", "(21) 2###-####"),
    ("IN", "+91 98### #####"),
    ("IN", "98### #####"),
    ("JP", "+81 3-####-####"),
    ("JP", "03-####-####"),
    ("JP", "090-####-####"),
    ("AU", "+61 2 #### ####"),
    ("AU", "(02) #### ####"),
    ("AU", "0412 ### ###"),
    ("US", "(3##) 555-####"),
    ("US", "4##-555-####"),
    ("US", "+1 6## 555 ####"),
    ("local", "### ####"),
    ("local", "##-##-##-##"),
    ("local", "### ### ###"),
    ("local", "(##) ###-###"),
]
PHONE_CUES = [
    "call me at ",
    "my number is ",
    "Tel.: ",
    "phone: ",
    "reach me on ",
    "WhatsApp: ",
    "mobile ",
    "ring me on ",
    "you can text ",
    "contact number ",
    "Téléphone : ",
    "Teléfono: ",
    "Telefon: ",
    "電話：",
]
CARDS = [  # (issuer prefix, length)
    ("4", 16),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3530", 16),
    ("3589", 19),
    ("36", 14),
    ("62", 16),
    ("62", 19),
    ("6759", 16),
    ("2131", 15),
]
IBAN_BBAN = {  # country: BBAN shape (n digit, a capital letter, c either)
    "DE": "n" * 18,
    "FR": "n" * 23,
    "ES": "n" * 20,
    "IT": "a" + "n" * 10 + "c" * 12,
    "NL": "aaaa" + "n" * 10,
    "GB": "aaaa" + "n" * 14,
    "BE": "n" * 12,
    "CH": "n" * 17,
    "PL": "n" * 24,
    "PT": "n" * 21,
    "SE": "n" * 20,
    "AT": "n" * 16,
}
DOMAINS = ["gmail.com", "web.de", "orange.fr", "yahoo.co.jp", "uol.com.br", "outlook.com", "mail.ru", "qq.com"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    """A number of `length` digits starting with `prefix` and a valid Luhn check digit."""
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(CARDS)
    number = luhn_complete(rng, prefix, length)
    style = rng.choice(["contiguous", "spaced", "dashed"])
    if style == "contiguous":
        return number
    sep = " " if style == "spaced" else "-"
    sizes = {15: [4, 6, 5], 14: [4, 6, 4], 19: [4, 4, 4, 4, 3]}.get(length, [4, 4, 4, 4])
    out, pos = [], 0
    for s in sizes:
        out.append(number[pos : pos + s])
        pos += s
    return sep.join(out)


def iban(rng: random.Random) -> str:
    country, shape = rng.choice(list(IBAN_BBAN.items()))
    pick = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}
    bban = "".join(rng.choice(pick[k]) for k in shape)
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    value = f"{country}{check:02d}{bban}"
    return value if rng.random() < 0.25 else " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def phone(rng: random.Random) -> str:
    _, fmt = rng.choice(PHONES)
    return "".join(rng.choice(string.digits) if ch == "#" else ch for ch in fmt)


def ssn(rng: random.Random) -> str:
    a, g, s = rng.randrange(100, 665), rng.randrange(10, 99), rng.randrange(1000, 9999)
    return f"{a}-{g}-{s}" if rng.random() < 0.7 else f"{a} {g} {s}"


def ipv4(rng: random.Random) -> str:
    first = rng.choice([8, 23, 45, 77, 91, 104, 151, 185, 203])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def person(rng: random.Random) -> tuple[str, str]:
    firsts, lasts = NAMES[rng.choice(list(NAMES))]
    return rng.choice(firsts), rng.choice(lasts)


def full_name(rng: random.Random, style: str = "plain") -> str:
    first, last = person(rng)
    if style == "initial":
        return rng.choice([f"{first[0]}. {last}", f"{first} {rng.choice(string.ascii_uppercase)}. {last}"])
    if style == "lower":
        return f"{first} {last}".lower()
    return f"{first} {last}"


def email(rng: random.Random) -> str:
    first, last = person(rng)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(10, 99)}"])
    plain = unicodedata.normalize("NFKD", local.lower().replace("ł", "l").replace("ı", "i"))
    plain = "".join(c for c in plain if c.isascii() and (c.isalnum() or c in ".-"))
    return f"{plain}@{rng.choice(DOMAINS)}"


P = str | tuple[str, str]  # plain text or (value, entity)


def _templates(rng: random.Random) -> list[list[P]]:
    n1, n2, n3 = full_name(rng), full_name(rng), full_name(rng)
    city, country = rng.choice(CITIES)
    city2, _ = rng.choice(CITIES)
    cue = rng.choice(PHONE_CUES)
    return [
        ["Yesterday ", (n1, "PERSON"), " from ", (city, "LOCATION"), " told me the parcel never arrived."],
        ["Directed by: ", (n1, "PERSON"), "\nWritten by: ", (n2, "PERSON"), "\nStarring: ", (n3, "PERSON")],
        ['"We will rebuild the harbour," said ', (n1, "PERSON"), ", the mayor of ", (city, "LOCATION"), "."],
        ["As ", (full_name(rng, "initial"), "PERSON"), " wrote in her memoir, ", (city, "LOCATION"), " was home."],
        ["user: hi, i'm ", (full_name(rng, "lower"), "PERSON"), " and ", cue, (phone(rng), "PHONE_NUMBER")],
        [
            "Attendees:\n- ",
            (n1, "PERSON"),
            " (",
            (email(rng), "EMAIL_ADDRESS"),
            ")\n- ",
            (n2, "PERSON"),
            ", ",
            cue,
            (phone(rng), "PHONE_NUMBER"),
        ],
        ["We moved from ", (city, "LOCATION"), " to ", (city2, "LOCATION"), ", ", (country, "LOCATION"), " last May."],
        ["Please ship it to ", (rng.choice(ADDRESSES), "STREET_ADDRESS"), ", attention ", (n1, "PERSON"), "."],
        ["Paid with my card ", (card(rng), "CREDIT_CARD"), " but the order shows as unpaid."],
        ["assistant: I have noted the card ", (card(rng), "CREDIT_CARD"), ". Anything else?"],
        ["Bitte überweisen Sie den Betrag auf ", (iban(rng), "IBAN_CODE"), ", Kontoinhaber ", (n1, "PERSON"), "."],
        ["Refund to IBAN ", (iban(rng), "IBAN_CODE"), " please; my e-mail is ", (email(rng), "EMAIL_ADDRESS"), "."],
        [
            "服务器地址：",
            (ipv4(rng), "IP_ADDRESS"),
            "，子网掩码：",
            ("255.255.255.0", "IP_ADDRESS"),
            "，DNS：",
            (ipv4(rng), "IP_ADDRESS"),
            "。",
        ],
        ["サーバー（", (ipv4(rng), "IP_ADDRESS"), "）に接続できません。"],
        ["Our logs show a login from ", (ipv4(rng), "IP_ADDRESS"), " in ", (city, "LOCATION"), "."],
        ["For the tax form my SSN is ", (ssn(rng), "US_SSN"), ", thanks, ", (n1.split()[0], "PERSON"), "."],
        ["My name is ", (person(rng)[0], "PERSON"), " and I need help with my booking."],
        [
            "Hola, me llamo ",
            (n1, "PERSON"),
            ", vivo en ",
            (city, "LOCATION"),
            " y mi ",
            cue,
            (phone(rng), "PHONE_NUMBER"),
            ".",
        ],
        [
            "Contact list: ",
            (n1, "PERSON"),
            " — ",
            (phone(rng), "PHONE_NUMBER"),
            "; ",
            (n2, "PERSON"),
            " — ",
            (email(rng), "EMAIL_ADDRESS"),
        ],
        [
            "Guests:\n",
            (n1, "PERSON"),
            "  ",
            (phone(rng), "PHONE_NUMBER"),
            "\n",
            (n2, "PERSON"),
            "  ",
            (phone(rng), "PHONE_NUMBER"),
        ],
        ["Dr. ", (person(rng)[1], "PERSON"), " will see you at the clinic in ", (city, "LOCATION"), "."],
        ["thanks ", (full_name(rng, "lower"), "PERSON"), ", i sent the screenshots to ", (email(rng), "EMAIL_ADDRESS")],
        ["Verses from ", (full_name(rng, "initial"), "PERSON"), "'s Cautionary Rhymes were read aloud."],
    ]


def make_texts(n: int, seed: int = 11) -> tuple[list[str], list[list[Gold]]]:
    """`n` texts with their gold spans."""
    rng = random.Random(seed)
    texts, golds = [], []
    for _ in range(n):
        parts = rng.choice(_templates(rng))
        text, gold = "", []
        for part in parts:
            value, entity = (part, None) if isinstance(part, str) else part
            if entity:
                gold.append((entity, len(text), len(text) + len(value)))
            text += value
        texts.append(text)
        golds.append(gold)
    return texts, golds
