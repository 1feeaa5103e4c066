"""Words and phrases spam filters and readers distrust, in Hebrew and English.

Matched on word boundaries, without case; a Hebrew word also with the one-letter prefixes
ו, ה, ב, ל, מ, ש, כ in front ("בחינם", "והחינם"). Lower case here.
"""

from __future__ import annotations

HEBREW = (
    "חינם", "ללא תשלום", "ללא עלות", "מתנה חינם", "דחוף", "הצעה מוגבלת", "לזמן מוגבל", "רק היום", "הזדמנות אחרונה",
    "הזדמנות חד פעמית", "פעם בחיים", "עד גמר המלאי", "אל תחמיצו", "אל תפספסו", "מהרו", "עכשיו או לעולם לא",
    "זכית", "זכיתם", "זכייה", "הגרלה", "פרס כספי", "כסף קל", "כסף מהיר", "הכנסה נוספת", "להתעשר", "עבודה מהבית",
    "ללא התחייבות", "ללא סיכון", "מובטח", "תוצאות מובטחות", "הלוואה", "אשראי מיידי", "מזומן מיידי", "קזינו",
    "הימורים", "ויאגרה", "הרזיה מהירה", "לרדת במשקל", "מבצע מטורף", "מחיר מטורף", "הנחה ענקית", "לחצו כאן",
    "לחץ כאן", "קבלו עכשיו", "חסר תקדים", "סוד",
)

ENGLISH = (
    "free", "100% free", "for free", "no cost", "no charge", "act now", "urgent", "limited time", "limited offer",
    "offer expires", "last chance", "once in a lifetime", "don't miss", "hurry", "today only", "winner",
    "you have won", "you've won", "congratulations", "prize", "cash", "cash bonus", "earn money", "make money",
    "extra income", "work from home", "be your own boss", "no obligation", "risk-free", "risk free", "guaranteed",
    "100%", "$$$", "click here", "buy now", "order now", "apply now", "call now", "lowest price", "best price",
    "cheap", "save big", "double your", "million dollars", "credit", "loan", "viagra", "casino", "weight loss",
    "lose weight", "miracle", "no catch", "this is not spam",
)
