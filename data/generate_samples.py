"""Deterministic generator of tracetune's embedded sample traces (data/samples/).

The traces are those of a believable production app: "Northwind Outfitters" support runs a ticket
triage assistant that reads a customer email and answers with a JSON ticket, produced by a large
model under a long system prompt. The app logs through four stacks (OpenAI request/response logs,
a Langfuse export, OpenTelemetry GenAI spans, a ShareGPT dump) and the logs contain what real logs
contain: exact retries, near-duplicates, PII, a few leaked API keys, failed calls, feedback,
multi-turn sessions logged call by call, tool calls and malformed lines.

`data/samples_truth.json` (beside the sample folder, so that ingesting the folder does not read it)
says what was planted where. Run: `python data/generate_samples.py [OUT_DIR]`.
The output is byte-identical for the same seed.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

SEED = 20261122
OUT = Path(__file__).resolve().parent / "samples"
MODEL = "gpt-4.1-2025-04-14"
START = datetime(2026, 10, 1, tzinfo=UTC)

SYSTEM_PROMPT = """You are TriageBot, the ticket triage assistant of Northwind Outfitters customer support.
Northwind Outfitters sells outdoor clothing and camping gear online in the US and Canada. Every message
you receive is the full text of one customer email, forwarded by the helpdesk. Your job is to turn it
into a ticket that the routing system can read.

Answer with ONE JSON object and nothing else: no greeting, no explanation, no markdown fences.
The object has exactly these keys, in this order:
- "priority": one of "urgent", "high", "normal", "low".
  urgent = money taken wrongly (double charge, unauthorized charge), a safety problem with a product,
  or a legal threat. high = an order that has not arrived after 10 or more days, a damaged or wrong
  item, a refund not received after 14 days, or a customer locked out of an account with an open
  order. normal = returns, exchanges, promo codes, late but delivered parcels, app problems.
  low = questions about products and suggestions.
- "category": one of "shipping", "billing", "returns", "account", "technical", "product_question".
- "sentiment": one of "negative", "neutral", "positive", judged from the customer's tone.
- "order_id": the order number as written in the email (format NW- followed by 6 digits), or null.
- "needs_human": true when the priority is urgent or high, or when the customer is angry; else false.
- "summary": one sentence of at most 25 words, in English, that an agent can read in two seconds.
  Never copy personal data (names, emails, phone numbers, addresses, card numbers) into the summary.

If the email contains several problems, file the ticket under the most severe one. If the email is
not a support request (spam, auto-replies), use category "product_question", priority "low" and say
so in the summary. Helpdesk agents may send follow-up instructions after your first answer; apply
them and answer again with the full updated JSON object. You can call the lookup_order tool to check
an order's status before you answer when the email gives an order number and the status matters."""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up the status of a Northwind Outfitters order by its order number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "Order number, e.g. NW-123456"}},
                "required": ["order_id"],
            },
        },
    }
]

FIRST = [
    "Maria",
    "James",
    "Priya",
    "Liam",
    "Sofia",
    "Noah",
    "Aisha",
    "Ethan",
    "Chloe",
    "Mateo",
    "Hannah",
    "Lucas",
    "Emma",
    "Oliver",
    "Yuki",
    "Daniel",
    "Fatima",
    "Samuel",
    "Grace",
    "Diego",
    "Olivia",
    "Ahmed",
    "Isabella",
    "Benjamin",
    "Zoe",
    "Henry",
    "Mia",
    "Jack",
    "Amelia",
    "Leo",
]
LAST = [
    "Garcia",
    "Smith",
    "Patel",
    "Nguyen",
    "Johnson",
    "Rossi",
    "Khan",
    "Brown",
    "Martin",
    "Lopez",
    "Kim",
    "Wilson",
    "Schmidt",
    "Tanaka",
    "Okafor",
    "Dubois",
    "Murphy",
    "Silva",
    "Cohen",
    "Anderson",
]
STREETS = [
    "Maple Avenue",
    "Oak Street",
    "Pine Road",
    "Cedar Lane",
    "Elm Drive",
    "Birch Court",
    "Lakeview Blvd",
    "Hillcrest Way",
    "Sunset Street",
    "River Road",
]
CITIES = [
    ("Portland", "OR", "97205"),
    ("Denver", "CO", "80203"),
    ("Austin", "TX", "78701"),
    ("Seattle", "WA", "98101"),
    ("Madison", "WI", "53703"),
    ("Boise", "ID", "83702"),
    ("Burlington", "VT", "05401"),
    ("Asheville", "NC", "28801"),
]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "fastmail.com"]
PRODUCTS = [
    "hiking boots",
    "rain jacket",
    "two-person tent",
    "sleeping bag",
    "trail backpack",
    "fleece hoodie",
    "camping stove",
    "headlamp",
    "trekking poles",
    "down vest",
    "water filter",
    "wool socks",
]

CONTEXT = [
    "I ordered it as a birthday present for my {relation}, so the timing really matters.",
    "We are leaving for a {days}-day hike in the {place} on {weekday} and I need my gear before then.",
    "I already tried the live chat on your website but nobody answered after {days} minutes.",
    "This is my {nth} order from you this year and it has never happened before.",
    "My {relation} recommended your store and I was excited to finally try it.",
    "I checked my spam folder and the {place} post office, nothing there either.",
    "I'm writing from my work account because my personal email is not loading today.",
    "The confirmation page showed a different delivery window than the email you sent me.",
    "I also noticed the product page now lists a lower price than what I paid.",
    "Last winter I bought a {product} from you and it was excellent, so I came back.",
    "I have attached a few photos of the packaging in case that helps your team.",
    "Your FAQ page says this should take about {days} business days to sort out.",
    "I called the number on the invoice on {weekday} but the line was busy all afternoon.",
    "Our scout troop is counting on this order for the {place} trip next month.",
    "I'm travelling for work until {weekday}, so email is the best way to reach me.",
    "The courier left a note saying they would try again, but they never came back.",
    "I would rather not pay for another shipment since this wasn't my mistake.",
    "If it's easier, I'm happy to pick it up from your {place} store instead.",
    "I used the gift card my {relation} gave me for part of the payment.",
    "My neighbour received a similar parcel from you without any trouble last week.",
    "Honestly I only need to know whether I should order a replacement elsewhere.",
    "It's the second time I'm writing about this, my first message got no reply.",
    "The app notification and the website tracking show two different statuses.",
    "I'm new to camping and bought the whole kit for a course starting on {weekday}.",
    "The size chart on the site seemed accurate for everything else I ordered.",
    "I signed up for your newsletter right after placing the order, if that matters.",
    "My bank flagged the transaction at first, maybe that caused some confusion.",
    "Please keep the rest of the order as it is, only this item is a problem.",
    "We live in a rural area, so deliveries sometimes go to the general store in {place}.",
    "I can send the original receipt or a screenshot of my account page if needed.",
]
RELATIONS = ["brother", "sister", "dad", "mom", "partner", "best friend", "daughter", "son", "colleague", "uncle"]
PLACES = ["Rockies", "Cascades", "Smokies", "Adirondacks", "Sierra", "Ozarks", "White Mountains", "Badlands"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NTH = ["second", "third", "fourth", "fifth", "sixth"]

GREETINGS = ["Hi,", "Hello,", "Hi there,", "Dear Northwind team,", "Hello support,", "Good morning,"]
SIGNOFFS = ["Thanks,", "Best regards,", "Regards,", "Thank you,", "Cheers,", "Sincerely,"]
TONES = {
    "negative": [
        "I am really frustrated with this.",
        "This is unacceptable and I expect a fix today.",
        "Honestly I'm very disappointed.",
        "I've been a customer for years and this is the worst experience.",
    ],
    "neutral": [
        "Could you look into it?",
        "Please let me know what the next steps are.",
        "Can you check this for me?",
        "I'd appreciate an update.",
    ],
    "positive": [
        "I love your gear, so I'm sure this is just a hiccup!",
        "Thanks so much for your help, you guys are great.",
        "No rush, and thanks in advance!",
        "Your team has always been helpful, thank you.",
    ],
}


@dataclass
class Email:
    """One customer email and the ticket a strong model files for it."""

    key: str
    text: str
    ticket: dict[str, Any]
    pii: list[str]
    secrets: list[str] = field(default_factory=list)
    order_id: str | None = None


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def _problem(rng: random.Random, category: str, order: str, product: str) -> tuple[str, str, str, bool]:
    """(problem text, priority, summary, needs order) for one category."""
    days = rng.randrange(3, 25)
    if category == "shipping":
        kind = rng.randrange(3)
        if kind == 0:
            prio = "high" if days >= 10 else "normal"
            return (
                f"I ordered a {product} (order {order}) {days} days ago and it still hasn't arrived. "
                "The tracking page hasn't updated since it left the warehouse.",
                prio,
                f"Order {order} ({product}) not delivered after {days} days; tracking stalled.",
                True,
            )
        if kind == 1:
            return (
                f"My package for order {order} arrived today but the {product} inside is damaged: "
                "the box was crushed and the item is torn.",
                "high",
                f"Order {order} arrived with a damaged {product}; customer wants a replacement.",
                True,
            )
        return (
            f"Tracking for order {order} says delivered yesterday, but nothing was at my door. It was a {product}.",
            "high",
            f"Order {order} ({product}) marked delivered but not received.",
            True,
        )
    if category == "billing":
        kind = rng.randrange(3)
        if kind == 0:
            return (
                f"I was charged twice for order {order} ({product}). Two identical charges show on my card "
                "statement and I only placed one order.",
                "urgent",
                f"Customer double-charged for order {order}; refund of duplicate charge needed.",
                True,
            )
        if kind == 1:
            prio = "high" if days >= 14 else "normal"
            return (
                f"I returned my {product} from order {order} {days} days ago and the refund still hasn't "
                "reached my account.",
                prio,
                f"Refund for returned {product} (order {order}) pending {days} days.",
                True,
            )
        return (
            "There is a charge from Northwind Outfitters on my card that I don't recognize. I did not place "
            "any order this month.",
            "urgent",
            "Customer reports an unauthorized charge with no matching order.",
            False,
        )
    if category == "returns":
        if rng.random() < 0.5:
            return (
                f"I'd like to return the {product} from order {order}, it doesn't fit. How do I get a return label?",
                "normal",
                f"Customer wants to return the {product} from order {order}; needs a label.",
                True,
            )
        return (
            f"Can I exchange the {product} from order {order} for a larger size?",
            "normal",
            f"Exchange request for a larger {product} from order {order}.",
            True,
        )
    if category == "account":
        if rng.random() < 0.5:
            return (
                f"I can't log in to my account, the password reset email never arrives, and I have an open "
                f"order {order} I need to change.",
                "high",
                f"Customer locked out of account with open order {order}; reset email not arriving.",
                True,
            )
        return (
            "Please delete my account and all the data you hold about me.",
            "normal",
            "Customer requests account deletion and removal of personal data.",
            False,
        )
    if category == "technical":
        if rng.random() < 0.5:
            return (
                "Your app crashes every time I tap checkout on my phone. I tried reinstalling it.",
                "normal",
                "Mobile app crashes at checkout even after reinstall.",
                False,
            )
        return (
            "The promo code TRAIL15 from your newsletter says it is invalid at checkout.",
            "normal",
            "Newsletter promo code TRAIL15 rejected at checkout.",
            False,
        )
    if rng.random() < 0.5:
        return (
            f"Do you sell the {product} in other colors? I'm planning a trip next month.",
            "low",
            f"Customer asks whether the {product} comes in other colors.",
            False,
        )
    return (
        "Have you thought about adding Apple Pay at checkout? It would make ordering easier.",
        "low",
        "Customer suggests adding Apple Pay at checkout.",
        False,
    )


def make_email(rng: random.Random, n: int) -> Email:
    category = rng.choices(
        ["shipping", "billing", "returns", "account", "technical", "product_question"], [30, 18, 16, 12, 12, 12]
    )[0]
    order = f"NW-{rng.randrange(100000, 999999)}"
    product = rng.choice(PRODUCTS)
    problem, priority, summary, uses_order = _problem(rng, category, order, product)
    sentiment = rng.choices(["negative", "neutral", "positive"], [35, 45, 20])[0]
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    pii = ["PERSON"]
    context = [
        c.format(
            relation=rng.choice(RELATIONS),
            place=rng.choice(PLACES),
            weekday=rng.choice(WEEKDAYS),
            days=rng.randrange(2, 15),
            nth=rng.choice(NTH),
            product=rng.choice(PRODUCTS),
        )
        for c in rng.sample(CONTEXT, rng.randrange(1, 4))
    ]
    lines = [rng.choice(GREETINGS), "", problem, *context, rng.choice(TONES[sentiment])]
    if category == "billing" and rng.random() < 0.35:
        lines.append(f"The card I used is {luhn_card(rng)}, if that helps.")
        pii.append("CREDIT_CARD")
    if category in ("shipping", "returns") and rng.random() < 0.5:
        city, state, zipc = rng.choice(CITIES)
        lines.append(f"My address is {rng.randrange(10, 9999)} {rng.choice(STREETS)}, {city}, {state} {zipc}.")
        pii.append("STREET_ADDRESS")
    signature = [rng.choice(SIGNOFFS), name]
    if rng.random() < 0.45:
        signature.append(
            f"{name.split()[0].lower()}.{name.split()[1].lower()}{rng.randrange(10, 99)}@{rng.choice(DOMAINS)}"
        )
        pii.append("EMAIL_ADDRESS")
    if rng.random() < 0.35:
        signature.append(f"({rng.randrange(201, 989)}) {rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}")
        pii.append("PHONE_NUMBER")
    secrets: list[str] = []
    if category == "technical" and rng.random() < 0.06:
        key = "sk-proj-" + "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(48)
        )
        lines.append(f"I'm calling your order API from my store integration with this key, maybe that's related: {key}")
        secrets.append("OPENAI_API_KEY")
    if uses_order:
        pii.append("ORDER_ID")
    text = "\n".join([*lines, "", *signature])
    ticket = {
        "priority": priority,
        "category": category,
        "sentiment": sentiment,
        "order_id": order if uses_order else None,
        "needs_human": priority in ("urgent", "high") or sentiment == "negative",
        "summary": summary,
    }
    return Email(f"email-{n:05d}", text, ticket, pii, secrets, order if uses_order else None)


def near_duplicate(rng: random.Random, e: Email, n: int) -> Email:
    """The same email lightly edited once: another greeting, a typo, or a short sentence added."""
    lines = e.text.split("\n")
    edit = rng.randrange(3)
    if edit == 0:
        lines[0] = rng.choice([g for g in GREETINGS if g != lines[0]])
    elif edit == 1:
        lines[2] = lines[2].replace(" the ", " teh ", 1) if " the " in lines[2] else lines[2] + " Thanks."
    else:
        lines.insert(len(lines) - 2, "Thanks again.")
    return Email(f"email-{n:05d}", "\n".join(lines), dict(e.ticket), list(e.pii), list(e.secrets), e.order_id)


def answer_text(rng: random.Random, ticket: dict[str, Any], mode: str) -> str:
    s = json.dumps(ticket)
    if mode == "invalid_json":
        return rng.choice(
            [
                f"Sure! Here is the ticket:\n{s}",
                s.replace('"priority"', "priority", 1),
                "```json\n" + s + "\n```",
                s.replace("}", "", 1) + "\n(end)",
            ]
        )
    if mode == "truncated":
        return s[: rng.randrange(20, len(s) - 10)]
    return s


def updated_ticket(ticket: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    instruction = (
        "Update: the customer just called again, they are furious and say they were also charged twice. Escalate."
    )
    new = dict(
        ticket,
        priority="urgent",
        sentiment="negative",
        needs_human=True,
        summary=ticket["summary"].rstrip(".") + "; customer escalated by phone.",
    )
    return instruction, new


class Clock:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.t = rng, START

    def tick(self) -> datetime:
        self.t += timedelta(seconds=self.rng.randrange(20, 600))
        return self.t


def hexid(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def chatid(rng: random.Random) -> str:
    return "chatcmpl-" + "".join(
        rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(29)
    )


@dataclass
class Call:
    """One logged LLM call: the full message history sent, and what came back."""

    email: Email
    messages: list[dict[str, Any]]
    answer: dict[str, Any] | None  # assistant message, None when the call failed
    finish_reason: str | None
    at: datetime
    planted: list[str]
    session_id: str | None = None
    feedback: int | None = None  # 1 thumbs up, 0 thumbs down
    error: str | None = None
    usage: tuple[int, int] = (0, 0)


def plan_calls(rng: random.Random, clock: Clock, emails: list[Email], allow_tools: bool) -> list[Call]:
    """The calls an app makes for a list of emails: failures, retries, sessions and tool calls planted."""
    calls: list[Call] = []
    for e in emails:
        base = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": e.text}]
        planted = [f"pii:{p}" for p in e.pii] + [f"secret:{s}" for s in e.secrets]
        if e.key.endswith("n"):
            planted.append("near_duplicate")
        r = rng.random()
        session = f"sess-{hexid(rng, 12)}" if rng.random() < 0.6 else None
        at = clock.tick()
        usage = (len(SYSTEM_PROMPT + e.text) // 4, len(json.dumps(e.ticket)) // 4)
        if r < 0.03:
            calls.append(
                Call(
                    e,
                    base,
                    None,
                    None,
                    at,
                    [*planted, "error"],
                    session,
                    error="Rate limit reached for gpt-4.1 in organization org-northwind on tokens per min",
                    usage=(usage[0], 0),
                )
            )
            continue
        if r < 0.05:
            calls.append(
                Call(
                    e,
                    base,
                    {"role": "assistant", "content": answer_text(rng, e.ticket, "truncated")},
                    "length",
                    at,
                    [*planted, "truncated"],
                    session,
                    usage=usage,
                )
            )
            continue
        if r < 0.08:
            fb = 0 if rng.random() < 0.6 else None
            calls.append(
                Call(
                    e,
                    base,
                    {"role": "assistant", "content": answer_text(rng, e.ticket, "invalid_json")},
                    "stop",
                    at,
                    [*planted, "invalid_json"] + (["thumbs_down"] if fb == 0 else []),
                    session,
                    feedback=fb,
                    usage=usage,
                )
            )
            continue
        if allow_tools and e.order_id and r < 0.18:
            call_id = "call_" + hexid(rng, 24)
            tool_msg = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": e.order_id})},
                    }
                ],
            }
            status = rng.choice(["in_transit", "delivered", "processing", "returned"])
            calls.append(Call(e, base, tool_msg, "tool_calls", at, [*planted, "tool_call"], session, usage=usage))
            history = [
                *base,
                tool_msg,
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": json.dumps({"order_id": e.order_id, "status": status}),
                },
            ]
            final = {"role": "assistant", "content": answer_text(rng, e.ticket, "ok")}
            calls.append(
                Call(
                    e,
                    history,
                    final,
                    "stop",
                    clock.tick(),
                    [*planted, "tool_result", "prefix_extends"],
                    session,
                    usage=usage,
                )
            )
            continue
        fb = None
        u = rng.random()
        if u < 0.15:
            fb = 1
        elif u < 0.19:
            fb = 0
        tag = ["thumbs_up"] if fb == 1 else ["thumbs_down"] if fb == 0 else []
        ok = {"role": "assistant", "content": answer_text(rng, e.ticket, "ok")}
        first = Call(e, base, ok, "stop", at, [*planted, *tag], session, feedback=fb, usage=usage)
        calls.append(first)
        if session and rng.random() < 0.08:
            instruction, new = updated_ticket(e.ticket)
            history = [*base, ok, {"role": "user", "content": instruction}]
            calls.append(
                Call(
                    e,
                    history,
                    {"role": "assistant", "content": json.dumps(new)},
                    "stop",
                    clock.tick(),
                    [*planted, "multi_turn", "prefix_extends"],
                    session,
                    usage=usage,
                )
            )
        if rng.random() < 0.05:
            calls.append(
                Call(
                    e,
                    base,
                    dict(ok),
                    "stop",
                    at + timedelta(seconds=rng.randrange(1, 5)),
                    [*planted, "exact_retry"],
                    session,
                    usage=usage,
                )
            )
    return calls


# ---------------------------------------------------------------- writers, one per format


def openai_records(rng: random.Random, calls: list[Call]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        req: dict[str, Any] = {
            "model": "gpt-4.1",
            "messages": c.messages,
            "temperature": 0,
            "response_format": {"type": "json_object"} if not c.answer or not c.answer.get("tool_calls") else None,
            "tools": TOOLS,
            "user": c.email.key.split("-")[1],
        }
        req = {k: v for k, v in req.items() if v is not None}
        rec: dict[str, Any] = {"timestamp": c.at.isoformat().replace("+00:00", "Z"), "request": req}
        if c.answer is None:
            rec["response"] = None
            rec["error"] = {"message": c.error, "type": "tokens", "code": "rate_limit_exceeded"}
        else:
            rec["response"] = {
                "id": chatid(rng),
                "object": "chat.completion",
                "created": int(c.at.timestamp()),
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": c.finish_reason,
                        "logprobs": None,
                        "message": {
                            "role": "assistant",
                            "content": c.answer.get("content"),
                            "refusal": None,
                            **({"tool_calls": c.answer["tool_calls"]} if c.answer.get("tool_calls") else {}),
                        },
                    }
                ],
                "usage": {
                    "prompt_tokens": c.usage[0],
                    "completion_tokens": c.usage[1],
                    "total_tokens": c.usage[0] + c.usage[1],
                },
                "system_fingerprint": "fp_" + hexid(rng, 10),
            }
        rec["latency_ms"] = rng.randrange(600, 4000)
        if c.session_id:
            rec["session_id"] = c.session_id
        rec["metadata"] = {"app": "ticket-triage", "app_version": rng.choice(["2.3.0", "2.4.1"])}
        if c.feedback is not None:
            rec["feedback"] = [{"name": "thumbs", "value": c.feedback, "comment": None}]
        out.append(rec)
    return out


def langfuse_records(rng: random.Random, calls: list[Call]) -> list[dict[str, Any]]:
    """A Langfuse export: one `{trace, observations}` per trace; a tool-call pair shares a trace."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for c in calls:
        joins = current is not None and "tool_result" in c.planted
        if not joins:
            tid = hexid(rng, 32)
            current = {
                "trace": {
                    "id": tid,
                    "projectId": "northwind-support",
                    "name": "ticket-triage",
                    "timestamp": c.at.isoformat().replace("+00:00", "Z"),
                    "environment": "production",
                    "tags": ["triage"],
                    "release": "2.4.1",
                    "userId": c.email.key,
                    "sessionId": c.session_id,
                    "public": False,
                    "metadata": {"channel": "email"},
                    "scores": [],
                },
                "observations": [
                    {
                        "id": hexid(rng, 16),
                        "traceId": tid,
                        "type": "SPAN",
                        "name": "handle-email",
                        "startTime": c.at.isoformat().replace("+00:00", "Z"),
                        "level": "DEFAULT",
                    }
                ],
            }
            out.append(current)
        assert current is not None
        tid = current["trace"]["id"]
        oid = hexid(rng, 16)
        end = c.at + timedelta(milliseconds=rng.randrange(600, 4000))
        obs = {
            "id": oid,
            "traceId": tid,
            "type": "GENERATION",
            "name": "triage",
            "startTime": c.at.isoformat().replace("+00:00", "Z"),
            "endTime": end.isoformat().replace("+00:00", "Z"),
            "model": MODEL,
            "modelParameters": {"temperature": 0},
            "level": "DEFAULT",
            "statusMessage": None,
            "input": json.dumps(c.messages),
            "output": json.dumps(c.answer) if c.answer else None,
            "usageDetails": {"input": c.usage[0], "output": c.usage[1], "total": sum(c.usage)},
            "metadata": {"finish_reason": c.finish_reason} if c.finish_reason else {},
        }
        if c.answer is None:
            obs["level"], obs["statusMessage"] = "ERROR", c.error
        current["observations"].append(obs)
        if c.feedback is not None:
            current["trace"]["scores"].append(
                {
                    "name": "user-feedback",
                    "value": c.feedback,
                    "dataType": "BOOLEAN",
                    "source": "API",
                    "traceId": tid,
                    "observationId": oid,
                    "comment": None if c.feedback else "wrong priority",
                }
            )
    return out


def otel_records(rng: random.Random, calls: list[Call]) -> list[dict[str, Any]]:
    """OTel GenAI spans: most with current `gen_ai.*.messages`, an older service version with `gen_ai.prompt.N`."""
    out = []
    for c in calls:
        start = c.at
        end = c.at + timedelta(milliseconds=rng.randrange(600, 4000))
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4.1",
            "gen_ai.request.temperature": 0.0,
            "service.version": "2.4.1",
        }
        legacy = (
            rng.random() < 0.25
            and not any(m.get("tool_calls") for m in c.messages)
            and not (c.answer or {}).get("tool_calls")
        )
        if legacy:
            attrs["service.version"] = "2.2.0"
            attrs.pop("gen_ai.provider.name")
            attrs["gen_ai.system"] = "openai"
            for i, m in enumerate(c.messages):
                attrs[f"gen_ai.prompt.{i}.role"] = m["role"]
                attrs[f"gen_ai.prompt.{i}.content"] = m["content"]
            if c.answer:
                attrs["gen_ai.completion.0.role"] = "assistant"
                attrs["gen_ai.completion.0.content"] = c.answer["content"]
                attrs["gen_ai.completion.0.finish_reason"] = c.finish_reason
        else:
            attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": c.messages[0]["content"]}])
            attrs["gen_ai.input.messages"] = json.dumps([_otel_msg(m) for m in c.messages[1:]])
            if c.answer:
                attrs["gen_ai.output.messages"] = json.dumps(
                    [{**_otel_msg(c.answer), "finish_reason": c.finish_reason}]
                )
        if c.session_id:
            attrs["gen_ai.conversation.id"] = c.session_id
        if c.answer:
            attrs["gen_ai.response.model"] = MODEL
            attrs["gen_ai.response.finish_reasons"] = [c.finish_reason]
            attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"] = c.usage
        span: dict[str, Any] = {
            "name": "chat gpt-4.1",
            "context": {"trace_id": "0x" + hexid(rng, 32), "span_id": "0x" + hexid(rng, 16)},
            "kind": "SpanKind.CLIENT",
            "parent_id": None,
            "start_time": start.isoformat().replace("+00:00", "Z"),
            "end_time": end.isoformat().replace("+00:00", "Z"),
            "status": {"status_code": "UNSET"} if c.answer else {"status_code": "ERROR", "description": c.error},
            "attributes": attrs,
            "events": [],
            "resource": {"attributes": {"service.name": "triage-worker"}, "schema_url": ""},
        }
        if not c.answer:
            attrs["error.type"] = "RateLimitError"
        out.append(span)
    return out


def _otel_msg(m: dict[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if m.get("content"):
        parts.append({"type": "text", "content": m["content"]})
    for tc in m.get("tool_calls") or []:
        parts.append(
            {
                "type": "tool_call",
                "id": tc["id"],
                "name": tc["function"]["name"],
                "arguments": json.loads(tc["function"]["arguments"]),
            }
        )
    if m["role"] == "tool":
        return {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": m["tool_call_id"], "response": m["content"]}],
        }
    return {"role": m["role"], "parts": parts}


def sharegpt_records(rng: random.Random, calls: list[Call]) -> list[dict[str, Any]]:
    """A ShareGPT dump of conversations the team exported earlier (system prompt as a top-level field)."""
    out = []
    for c in calls:
        conv = [
            {"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]} for m in c.messages[1:]
        ]
        if c.answer:
            conv.append({"from": "gpt", "value": c.answer["content"]})
        out.append({"id": f"triage_{hexid(rng, 8)}", "system": SYSTEM_PROMPT, "conversations": conv})
    return out


# ---------------------------------------------------------------- malformed records


def malformed_openai(rng: random.Random, good: dict[str, Any]) -> list[tuple[bytes, str]]:
    """Bad lines a real log accumulates, each with the quarantine code ingest must give it."""
    line = json.dumps(good).encode()
    bad_type = json.loads(json.dumps(good))
    bad_type["request"]["messages"][1]["content"] = 42
    bad_role = json.loads(json.dumps(good))
    bad_role["request"]["messages"][1]["role"] = "customer"
    bad_role["response"]["id"] = chatid(rng)
    empty = {
        "timestamp": good["timestamp"],
        "request": {"model": "gpt-4.1", "messages": []},
        "response": {"id": chatid(rng), "object": "chat.completion", "choices": []},
    }
    return [
        (line[: len(line) // 2], "invalid_json"),
        (line[:-40] + b'\xff\xfe broken bytes"}}', "encoding_error"),
        (json.dumps(bad_type).encode(), "schema_error"),
        (json.dumps(bad_role).encode(), "unknown_role"),
        (json.dumps(empty).encode(), "no_messages"),
        (json.dumps({"event": "healthcheck", "status": "ok"}).encode(), "unknown_format"),
    ]


def malformed_otel(good: dict[str, Any]) -> list[tuple[bytes, str]]:
    line = json.dumps(good).encode()
    db_span = {
        "name": "SELECT orders",
        "context": {"trace_id": "0x1", "span_id": "0x2"},
        "attributes": {"db.system": "postgresql", "db.statement": "SELECT * FROM orders WHERE id = $1"},
    }
    return [(line[: len(line) - 25], "invalid_json"), (json.dumps(db_span).encode(), "not_a_generation")]


# ---------------------------------------------------------------- assembly


def _jsonl(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode() for r in records]


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def truth_path(out: Path) -> Path:
    return out.parent / f"{out.name}_truth.json"


def generate(out: Path = OUT, seed: int = SEED) -> dict[str, Any]:
    """Write the sample files into `out` and the ground truth beside it; returns the ground truth."""
    rng = random.Random(seed)
    clock = Clock(rng)
    emails: list[Email] = []
    for n in range(4100):
        e = make_email(rng, n)
        emails.append(e)
        if rng.random() < 0.08:
            d = near_duplicate(rng, e, n)
            d.key = e.key + "n"
            emails.append(d)
    rng.shuffle(emails)
    q = len(emails)
    shares = {
        "openai": emails[: int(q * 0.38)],
        "langfuse": emails[int(q * 0.38) : int(q * 0.62)],
        "otel": emails[int(q * 0.62) : int(q * 0.82)],
        "sharegpt": emails[int(q * 0.82) :],
    }
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {"seed": seed, "files": {}, "records": [], "malformed": []}

    def note(file: str, line: int, calls: list[Call], fmt: str) -> None:
        for c in calls:
            if fmt in ("otel", "sharegpt"):  # these exports carry no user feedback
                c.planted = [p for p in c.planted if p not in ("thumbs_up", "thumbs_down")]
            truth["records"].append(
                {
                    "file": file,
                    "line": line,
                    "format": fmt,
                    "email": c.email.key.rstrip("n"),
                    "planted": sorted(set(c.planted)),
                }
            )

    # OpenAI logs (gzip JSONL) with malformed lines interleaved.
    calls = plan_calls(rng, clock, shares["openai"], allow_tools=True)
    records = openai_records(rng, calls)
    lines = _jsonl(records)
    bad = malformed_openai(rng, records[0])
    positions = sorted(rng.sample(range(1, len(lines)), len(bad)))
    file = "openai_logs.jsonl.gz"
    out_lines: list[bytes] = []
    call_at_line: list[tuple[int, Call]] = []
    bi = 0
    for i, (ln, c) in enumerate(zip(lines, calls, strict=True)):
        while bi < len(bad) and positions[bi] == i:
            out_lines.append(bad[bi][0])
            truth["malformed"].append({"file": file, "line": len(out_lines), "code": bad[bi][1]})
            bi += 1
        out_lines.append(ln)
        call_at_line.append((len(out_lines), c))
    for line_no, c in call_at_line:
        note(file, line_no, [c], "openai_chat")
    (out / file).write_bytes(_gzip(b"\n".join(out_lines) + b"\n"))

    # Langfuse export (gzip JSON array of {trace, observations}); one trace without a generation.
    calls = plan_calls(rng, clock, shares["langfuse"], allow_tools=True)
    exports = langfuse_records(rng, calls)
    file = "langfuse_export.json.gz"
    gi = 0
    for item_no, ex in enumerate(exports, start=1):
        gens = [o for o in ex["observations"] if o["type"] == "GENERATION"]
        note(file, item_no, calls[gi : gi + len(gens)], "langfuse")
        gi += len(gens)
    orphan = {
        "trace": {"id": hexid(rng, 32), "name": "healthcheck", "timestamp": START.isoformat(), "scores": []},
        "observations": [
            {"id": hexid(rng, 16), "traceId": "x", "type": "SPAN", "name": "ping", "startTime": START.isoformat()}
        ],
    }
    exports.append(orphan)
    truth["malformed"].append({"file": file, "line": len(exports), "code": "no_messages"})
    (out / file).write_bytes(_gzip(json.dumps(exports, ensure_ascii=False, indent=1).encode()))

    # OpenTelemetry spans (zstd JSONL).
    calls = plan_calls(rng, clock, shares["otel"], allow_tools=True)
    spans = otel_records(rng, calls)
    lines = _jsonl(spans)
    file = "otel_spans.jsonl.zst"
    bad = malformed_otel(spans[0])
    out_lines = []
    for i, (ln, c) in enumerate(zip(lines, calls, strict=True)):
        if i in (len(lines) // 3, 2 * len(lines) // 3):
            b = bad.pop()
            out_lines.append(b[0])
            truth["malformed"].append({"file": file, "line": len(out_lines), "code": b[1]})
        out_lines.append(ln)
        note(file, len(out_lines), [c], "otel")
    (out / file).write_bytes(zstandard.ZstdCompressor(level=10).compress(b"\n".join(out_lines) + b"\n"))

    # ShareGPT (plain JSON array): successful single-call conversations only, as a team's earlier export.
    calls = [
        c
        for c in plan_calls(rng, clock, shares["sharegpt"], allow_tools=False)
        if c.answer and "multi_turn" not in c.planted
    ]
    file = "sharegpt_export.json.gz"
    convs = sharegpt_records(rng, calls)
    for i, c in enumerate(calls, start=1):
        note(file, i, [c], "sharegpt")
    (out / file).write_bytes(_gzip(json.dumps(convs, ensure_ascii=False, indent=1).encode() + b"\n"))

    kinds = Counter(
        k.split(":")[0] if k.startswith(("pii:", "secret:")) else k for r in truth["records"] for k in r["planted"]
    )
    truth["summary"] = {
        "records": len(truth["records"]) + len(truth["malformed"]),
        "valid_records": len(truth["records"]),
        "malformed": dict(Counter(m["code"] for m in truth["malformed"])),
        "by_format": dict(Counter(r["format"] for r in truth["records"])),
        "planted": dict(sorted(kinds.items())),
        "secrets": sum(1 for r in truth["records"] for k in r["planted"] if k.startswith("secret:")),
    }
    for f in sorted(out.iterdir()):
        truth["files"][f.name] = f.stat().st_size
    truth_path(out).write_text(json.dumps(truth, sort_keys=True) + "\n", encoding="utf-8")
    return truth


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    summary = generate(target)["summary"]
    print(json.dumps(summary, indent=1))
