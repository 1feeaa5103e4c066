"""The demo store's product catalogue: what an Israeli shop for the elderly really sells.

Consumables carry a usage period so the generator can replay replenishment rhythms, the
behaviour marketers most want to automate ("your pads are about to run out").
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES: dict[str, str] = {
    "absorbent": "מוצרי ספיגה",
    "vitamins": "ויטמינים ותוספי תזונה",
    "walkers": "הליכונים ועזרי ניידות",
    "clothing": "ביגוד נוח",
    "bath": "בטיחות באמבטיה ובבית",
    "devices": "מכשירי מדידה ובריאות",
}


@dataclass(frozen=True)
class Product:
    """One item on sale; `usage_days` is how long one unit lasts, None for durable goods."""

    sku: str
    name: str
    category: str
    price: float
    consumable: bool
    usage_days: int | None
    technical: bool
    margin: float


def _consumable(sku: str, name: str, category: str, price: float, usage_days: int, margin: float) -> Product:
    return Product(sku, name, category, price, True, usage_days, False, margin)


def _durable(sku: str, name: str, category: str, price: float, technical: bool, margin: float) -> Product:
    return Product(sku, name, category, price, False, None, technical, margin)


_PRODUCTS: tuple[Product, ...] = (
    _consumable("ABS-001", "תחתוני ספיגה למבוגרים, מידה M (30 יח')", "absorbent", 89.90, 30, 0.32),
    _consumable("ABS-002", "תחתוני ספיגה למבוגרים, מידה L (30 יח')", "absorbent", 94.90, 30, 0.32),
    _consumable("ABS-003", "חיתולי לילה בספיגה מוגברת (28 יח')", "absorbent", 109.90, 30, 0.30),
    _consumable("ABS-004", "תחבושות לדליפת שתן קלה (60 יח')", "absorbent", 59.90, 30, 0.38),
    _consumable("ABS-005", "סדיניות חד-פעמיות למיטה (30 יח')", "absorbent", 69.90, 30, 0.35),
    _consumable("ABS-006", "מגבונים לחים לטיפוח העור (6 חבילות)", "absorbent", 49.90, 30, 0.45),
    _consumable("ABS-007", "קרם הגנה לעור רגיש", "absorbent", 39.90, 60, 0.50),
    _consumable("VIT-001", "ויטמין D3 1000 יחב\"ל (90 כמוסות)", "vitamins", 59.90, 90, 0.55),
    _consumable("VIT-002", "סידן + מגנזיום (60 טבליות)", "vitamins", 54.90, 60, 0.52),
    _consumable("VIT-003", "ויטמין B12 מתחת ללשון (30 טבליות)", "vitamins", 44.90, 30, 0.55),
    _consumable("VIT-004", "אומגה 3 שמן דגים (90 כמוסות)", "vitamins", 99.90, 90, 0.50),
    _consumable("VIT-005", "מולטי ויטמין לגיל השלישי (30 טבליות)", "vitamins", 64.90, 30, 0.52),
    _consumable("VIT-006", "גלוקוזאמין וכונדרואיטין למפרקים (60 טבליות)", "vitamins", 119.90, 60, 0.48),
    _consumable("VIT-007", "תוסף חלבון לקשישים, טעם וניל (30 מנות)", "vitamins", 139.90, 30, 0.40),
    _consumable("VIT-008", "ברזל עדין לקיבה (60 כמוסות)", "vitamins", 49.90, 60, 0.55),
    _consumable("DEV-004", "סטריפים למד סוכר (50 יח')", "devices", 79.90, 30, 0.30),
    _durable("WLK-001", "הליכון רולטור 4 גלגלים עם מושב", "walkers", 649.00, True, 0.28),
    _durable("WLK-002", "הליכון מתקפל ללא גלגלים", "walkers", 249.00, True, 0.30),
    _durable("WLK-003", "מקל הליכה מתכוונן עם בסיס רחב", "walkers", 119.00, True, 0.40),
    _durable("WLK-004", "כיסא גלגלים קל משקל מתקפל", "walkers", 1890.00, True, 0.22),
    _durable("WLK-005", "רולטור לבית ולחוץ, מסגרת אלומיניום", "walkers", 899.00, True, 0.25),
    _durable("WLK-006", "זוג קביים מתכווננים", "walkers", 179.00, True, 0.35),
    _durable("WLK-007", "סל וכיס נשיאה להליכון", "walkers", 69.90, False, 0.55),
    _durable("CLO-001", "נעלי בית מונעות החלקה", "clothing", 129.90, False, 0.55),
    _durable("CLO-002", "מכנסי פוטר עם גומי רך", "clothing", 99.90, False, 0.58),
    _durable("CLO-003", "חלוק רחצה מגבת", "clothing", 149.90, False, 0.55),
    _durable("CLO-004", "גרביים לסוכרתיים ללא גומי (3 זוגות)", "clothing", 59.90, False, 0.60),
    _durable("CLO-005", "סוודר צמר עם כפתורים גדולים", "clothing", 219.00, False, 0.52),
    _durable("CLO-006", "חולצה עם סגירה מגנטית", "clothing", 139.90, False, 0.55),
    _durable("CLO-007", "פיג'מה כותנה חמה לחורף", "clothing", 169.90, False, 0.55),
    _durable("BTH-001", "כיסא רחצה מתכוונן", "bath", 229.00, True, 0.38),
    _durable("BTH-002", "ידית אחיזה לקיר עם וואקום", "bath", 89.90, True, 0.45),
    _durable("BTH-003", "מושב אסלה מוגבה", "bath", 199.00, True, 0.40),
    _durable("BTH-004", "שטיחון נגד החלקה למקלחת", "bath", 59.90, False, 0.55),
    _durable("BTH-005", "לחצן מצוקה אלחוטי", "bath", 399.00, True, 0.35),
    _durable("DEV-001", "מד לחץ דם דיגיטלי לזרוע", "devices", 249.00, True, 0.32),
    _durable("DEV-002", "מד סוכר עם צג גדול", "devices", 149.00, True, 0.30),
    _durable("DEV-003", "קופסת תרופות שבועית עם תזכורת", "devices", 79.90, True, 0.50),
    _durable("DEV-005", "מד חום אינפרה-אדום ללא מגע", "devices", 129.00, True, 0.40),
    _durable("DEV-006", "זכוכית מגדלת עם תאורה", "devices", 69.90, False, 0.55),
)


def catalogue() -> list[Product]:
    """All products on sale, in a fixed order so generated data is reproducible."""
    return list(_PRODUCTS)
