"""Five small topic vocabularies: synthetic articles drawn from one topic relate to each other and not to the
others, so the "Check Also" rules can be tested without the BBC corpus."""

from __future__ import annotations

_TOPIC_WORDS: dict[str, str] = {
    "football": (
        "football match goal striker midfielder league cup referee penalty club manager season stadium "
        "fans premiership chelsea arsenal liverpool defender keeper transfer tackle squad coach injury "
        "fixture kick scored header winger captain draw replay semi final newcastle everton tottenham "
        "celtic rangers bolton uefa fa champions striking substitute booked sent pitch unbeaten"
    ),
    "election": (
        "election minister labour tory party vote voters campaign parliament government mp poll blair "
        "howard chancellor policy commons manifesto democrats constituency cabinet brown kennedy lords "
        "bill reform immigration asylum council tax leader opposition conservatives candidate ballot "
        "spokesman speech downing whitehall secretary prescott milburn referendum backbench seats"
    ),
    "markets": (
        "shares profits market investors bank economy growth rates inflation dollar prices company firm "
        "quarter earnings analysts stock oil sales deficit euro interest exports imports gdp revenue "
        "debt bonds merger takeover shareholders yukos airline retail consumer spending unemployment "
        "federal reserve currency trade surplus dividend forecast fiscal"
    ),
    "cinema": (
        "film actor actress oscar director box office hollywood movie award star comedy drama cinema "
        "festival studio role screen nomination premiere producer sequel aviator scorsese dicaprio "
        "bafta golden globe ceremony documentary musical theatre starring script cast critics "
        "blockbuster animated nominated academy tickets audiences"
    ),
    "gadgets": (
        "mobile phone software computer internet broadband users technology digital online microsoft "
        "apple games console network virus device music downloads ipod wireless gadget laptop "
        "windows linux security spam hackers website search google chip processor gaming sony "
        "nintendo handset camera gigabyte browser firefox"
    ),
}
TOPICS: dict[str, list[str]] = {name: words.split() for name, words in _TOPIC_WORDS.items()}
