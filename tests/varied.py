"""Traces unlike the sample app's, for the default-config tests: an agent with tools and a long system
prompt, Chinese and French conversations, free-text answers, in several source formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AGENT_PROMPT = "You are the travel-planning agent of a small booking company. " + " ".join(
    f"Rule {i}: when the traveller asks about {topic}, check the live data with the right tool before you "
    f"answer, quote the source, and never invent {topic} details."
    for i, topic in enumerate(
        ["flights", "hotels", "trains", "weather", "visas", "currency", "museums", "restaurants"] * 12
    )
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CITIES = ["Lisbon", "Kyoto", "Nairobi", "Oslo", "Lima", "Hanoi"]
CHINESE = [
    (
        "请帮我把这段话翻译成英文：今天的会议改到下午三点，请大家准时参加。",
        "Today's meeting has moved to 3 p.m.; please be on time.",
    ),
    (
        "我想学做红烧肉，需要准备哪些材料？步骤复杂吗？",
        "需要五花肉、冰糖、生抽、老抽、料酒和葱姜。先焯水，再炒糖色，最后小火慢炖一小时。",
    ),
    (
        "推荐三本适合初学者的编程书，最好是中文的。",
        "可以看《Python编程：从入门到实践》、《笨办法学Python》和《算法图解》，都很适合入门。",
    ),
]
FRENCH = [
    (
        "Peux-tu m'expliquer la différence entre un prêt à taux fixe et un prêt à taux variable ?",
        "Avec un taux fixe, la mensualité reste la même pendant toute la durée du prêt ; avec un taux variable, "
        "elle suit l'évolution d'un indice de référence et peut monter ou baisser.",
    ),
    (
        "Rédige un court message pour remercier mon équipe après la livraison du projet.",
        "Merci à toutes et à tous pour votre engagement ces dernières semaines : la livraison est un succès "
        "collectif et je suis fier de travailler avec vous.",
    ),
]
FREE_TEXT = [
    (
        "Write a haiku about a lighthouse in winter.",
        "Frost on the iron rail\nthe beam sweeps an empty sea\ngulls sleep in its light",
    ),
    (
        "Summarize the plot of Hamlet in two sentences.",
        "Prince Hamlet learns that his uncle murdered his father to take the throne and marry his mother. "
        "His hesitant quest for revenge ends in a duel that kills nearly everyone at court.",
    ),
    (
        "Give me three tips to keep sourdough starter healthy.",
        "Feed it on a regular schedule, keep it somewhere warm but not hot, and discard part of it before each "
        "feeding so the flour-to-water ratio stays balanced.",
    ),
]


def _chat(rid: str, messages: list[dict[str, Any]], answer: dict[str, Any], *, tools: Any = None) -> dict:
    request: dict[str, Any] = {"model": "gpt-4.1-mini", "messages": messages}
    if tools:
        request["tools"] = tools
    return {
        "request": request,
        "response": {
            "id": rid,
            "object": "chat.completion",
            "created": 1790000000,
            "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **answer}}],
        },
    }


def agent_records() -> list[dict]:
    """Agent turns: the long prompt, a tool call, its result, the final answer."""
    out = []
    for i, city in enumerate(CITIES):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        messages = [
            {"role": "system", "content": AGENT_PROMPT},
            {"role": "user", "content": f"I land in {city} tomorrow morning, what should I pack for the weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": f"call_{i}",
                "content": json.dumps({"city": city, "temp_c": 10 + 3 * i, "sky": "cloudy"}),
            },
        ]
        answer = (
            f"It will be about {10 + 3 * i} degrees and cloudy in {city}: pack a light jacket and layers "
            "(source: get_weather)."
        )
        out.append(_chat(f"agent-{i}", messages, {"content": answer}, tools=TOOLS))
    return out


def write_varied(folder: Path) -> dict[str, str]:
    """Write the corpus as three files (OpenAI logs, Anthropic logs, ShareGPT); returns each trace's
    expected system prompt by a phrase of its user turn (None: no system prompt)."""
    folder.mkdir(parents=True, exist_ok=True)
    openai = agent_records()
    for i, (user, answer) in enumerate(FREE_TEXT):
        openai.append(
            _chat(
                f"free-{i}",
                [
                    {"role": "system", "content": "You are a friendly writing assistant."},
                    {"role": "user", "content": user},
                ],
                {"content": answer},
            )
        )
    (folder / "openai.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in openai), encoding="utf-8"
    )
    anthropic = [
        {
            "request": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 512,
                "system": "Tu es un assistant qui répond en français.",
                "messages": [{"role": "user", "content": user}],
            },
            "response": {
                "id": f"msg_fr{i}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [{"type": "text", "text": answer}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 30, "output_tokens": 60},
            },
        }
        for i, (user, answer) in enumerate(FRENCH)
    ]
    (folder / "anthropic.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in anthropic), encoding="utf-8"
    )
    sharegpt = [
        {
            "id": f"zh-{i}",
            "system": "你是一个乐于助人的中文助手。",
            "conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}],
        }
        for i, (user, answer) in enumerate(CHINESE)
    ]
    (folder / "sharegpt.json").write_text(json.dumps(sharegpt, ensure_ascii=False), encoding="utf-8")
    return {
        "what should I pack": AGENT_PROMPT,
        **{user[:20]: "You are a friendly writing assistant." for user, _ in FREE_TEXT},
        **{user[:20]: "Tu es un assistant qui répond en français." for user, _ in FRENCH},
        **{user[:12]: "你是一个乐于助人的中文助手。" for user, _ in CHINESE},
    }
