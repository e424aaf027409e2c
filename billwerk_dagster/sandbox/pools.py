"""Names, places and words the sandbox draws its fake people and companies from.

Full Unicode on purpose: German umlauts and ß, French accents, Polish letters, Japanese
script, characters outside the Basic Multilingual Plane (emoji), and the JSON-escaped
characters `"` and `\\`, so that every layer of the pipeline has to keep text intact.
"""

from __future__ import annotations

Names = tuple[str, ...]
# (country code, language, locale, first names, last names, cities, streets)
Region = tuple[str, str, str, Names, Names, Names, Names]

REGIONS: tuple[Region, ...] = (
    (
        "DE",
        "de",
        "de-DE",
        ("Jürgen", "Günther", "Käthe", "Sören", "Björn", "Anneliese", "Maximilian", "Jörg"),
        ("Müller", "Schäfer", "Größmann", "Weiß", "Bäcker", "Köhler", "Hoffmann", "Krüger"),
        ("München", "Köln", "Düsseldorf", "Lübeck", "Görlitz", "Berlin", "Saarbrücken"),
        ("Hauptstraße", "Königsallee", "Schloßstraße", "Am Mühlbach", "Lindenstraße"),
    ),
    (
        "FR",
        "fr",
        "fr-FR",
        ("François", "Hélène", "Zoë", "Jérôme", "Amélie", "Gaëlle", "Noël", "Loïc"),
        ("Lefèvre", "Bérénger", "Daucourt", "Gâteau", "Leclère", "Brassières", "Dubois"),
        ("Besançon", "Orléans", "Nîmes", "Saint-Étienne", "Périgueux", "Paris"),
        ("Rue de la Paix", "Avenue des Champs-Élysées", "Place du Marché", "Rue Lamartine"),
    ),
    (
        "PL",
        "pl",
        "pl-PL",
        ("Łukasz", "Małgorzata", "Paweł", "Agnieszka", "Wojciech", "Żaneta", "Grzegorz"),
        ("Wiśniewski", "Kowalczyk", "Dąbrowska", "Zieliński", "Szczęsny", "Łącka"),
        ("Łódź", "Kraków", "Gdańsk", "Wrocław", "Poznań", "Zielona Góra"),
        ("ulica Świętokrzyska", "aleja Róż", "ulica Źródlana", "plac Wolności"),
    ),
    (
        "JP",
        "ja",
        "ja-JP",
        ("太郎", "花子", "健一", "さくら", "翔太", "美咲"),
        ("山田", "佐藤", "鈴木", "高橋", "田中", "渡辺"),
        ("東京", "大阪", "京都", "札幌", "名古屋"),
        ("銀座一丁目", "本町通り", "桜坂"),
    ),
    (
        "CH",
        "de",
        "de-CH",
        ("Urs", "Reto", "Mägi", "Käthi", "Rösli", "Beat"),
        ("Zürcher", "Müller-Lüdenscheidt", "Brönnimann", "Hänni", "O'Brien"),
        ("Zürich", "Genève", "Bülach", "Neuchâtel"),
        ("Bahnhofstrasse", "Rue du Rhône", "Seefeldquai"),
    ),
)

COMPANY_FORMS: dict[str, tuple[str, ...]] = {
    "DE": ("GmbH", "AG", "GmbH & Co. KG", "e.K."),
    "FR": ("SARL", "SA", "SAS"),
    "PL": ("sp. z o.o.", "S.A."),
    "JP": ("株式会社", "合同会社"),
    "CH": ("AG", "GmbH", "Sàrl"),
}

COMPANY_WORDS = (
    "Bäckerei",
    "Café",
    "Kühltechnik",
    "Données",
    "Żegluga",
    "テクノロジー",
    "Straßenbau",
    "Crème",
    'Werkstatt "Zur Eiche"',
    "Back\\Slash Labs",
    "Nordlicht",
)

EMOJI = ("🚀", "☕", "🍰", "🌍", "✨")

CURRENCIES = {"DE": "EUR", "FR": "EUR", "PL": "PLN", "JP": "EUR", "CH": "CHF"}

VAT_BASIS_POINTS = {"DE": 1900, "FR": 2000, "PL": 2300, "JP": 1000, "CH": 810}

PLANS = (
    ("Basic", 990),
    ("Professional", 4900),
    ("Business", 14900),
    ("Enterprise Größe XL", 49900),
    ("Équipe", 2900),
)

ITEM_WORDS = (
    "Grundgebühr",
    "Nutzer-Lizenz",
    "Frais de service",
    "Opłata miesięczna",
    "追加ストレージ",
    "API calls (10k)",
    "Support Premium ✨",
)

# Custom field keys an account uses from the start, and one it adds halfway through the
# data, as accounts do: loaders must take new columns in their stride.
CUSTOM_FIELD_KEYS = ("Kostenstelle", "Segment", "Referrer", "SalesRep", "Priorität")
LATE_CUSTOM_FIELD_KEY = "NeuesFeld2024"

LIFECYCLE_STATUSES = ("Active", "Active", "Active", "InTrial", "Ended", "Paused")
ORDER_STATUSES = ("Completed", "Completed", "Completed", "InProgress", "Canceled", "Failed")
ORDER_TYPES = ("Signup", "Upgrade", "Downgrade", "ComponentSubscription", "Cancellation")
BEARER_MEDIA = ("Email", "Email", "Email", "Archive", "Post")
PAYMENT_PROVIDERS = ("InvoicePayment", "Stripe", "PayPal", "Adyen", "Reepay")
PHASE_TYPES = ("Normal", "Trial", "Inactive")
