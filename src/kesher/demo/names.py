"""Hebrew names, cities and email providers for the demo store's contacts.

Each name carries the Latin spelling its owner would use in an email address. First names are
split by generation, because a woman of eighty is more often Rivka than Noa and the demo
should read like a real Israeli customer list.
"""

from __future__ import annotations

# (Hebrew, Latin) — names common among Israelis born 1930-1960.
ELDER_FEMALE: tuple[tuple[str, str], ...] = (
    ("רחל", "rachel"), ("שרה", "sara"), ("אסתר", "ester"), ("מרים", "miriam"), ("רבקה", "rivka"),
    ("חנה", "hana"), ("לאה", "lea"), ("שושנה", "shoshana"), ("יהודית", "yehudit"), ("זהבה", "zehava"),
    ("אהובה", "ahuva"), ("צילה", "tzila"), ("פנינה", "pnina"), ("מלכה", "malka"), ("ציפורה", "tzipora"),
    ("דבורה", "dvora"), ("אילנה", "ilana"), ("נורית", "nurit"), ("חוה", "hava"), ("ברכה", "bracha"),
    ("מזל", "mazal"), ("סימה", "sima"), ("רות", "ruth"), ("עליזה", "aliza"), ("גילה", "gila"),
    ("אורה", "ora"), ("בתיה", "batya"), ("יפה", "yafa"), ("פרחה", "farha"), ("ז'קלין", "jacqueline"),
)
ELDER_MALE: tuple[tuple[str, str], ...] = (
    ("משה", "moshe"), ("אברהם", "avraham"), ("יצחק", "itzhak"), ("יעקב", "yaakov"), ("שלמה", "shlomo"),
    ("יוסף", "yosef"), ("חיים", "haim"), ("מרדכי", "mordechai"), ("שמעון", "shimon"), ("אליהו", "eliyahu"),
    ("מאיר", "meir"), ("אהרון", "aharon"), ("ישראל", "israel"), ("מנחם", "menachem"), ("זאב", "zeev"),
    ("שמואל", "shmuel"), ("בנימין", "binyamin"), ("ניסים", "nissim"), ("עזרא", "ezra"), ("רפאל", "refael"),
    ("צבי", "tzvi"), ("יהודה", "yehuda"), ("אפרים", "efraim"), ("גדעון", "gideon"), ("עמוס", "amos"),
    ("אריה", "arie"), ("מיכאל", "michael"), ("סלים", "salim"), ("ז'ק", "jacques"), ("דב", "dov"),
)
# Names common among their children, born 1960-1990.
ADULT_FEMALE: tuple[tuple[str, str], ...] = (
    ("מיכל", "michal"), ("יעל", "yael"), ("אורית", "orit"), ("ענת", "anat"), ("שירה", "shira"),
    ("רונית", "ronit"), ("קרן", "keren"), ("הילה", "hila"), ("לימור", "limor"), ("סיגל", "sigal"),
    ("מירב", "merav"), ("ליאת", "liat"), ("דנה", "dana"), ("נועה", "noa"), ("אפרת", "efrat"),
    ("טלי", "tali"), ("עינת", "einat"), ("אסנת", "osnat"), ("מורן", "moran"), ("אתי", "eti"),
    ("שרית", "sarit"), ("אביטל", "avital"), ("רוית", "ravit"), ("גלית", "galit"), ("ורד", "vered"),
    ("תמר", "tamar"), ("איילת", "ayelet"), ("סמדר", "smadar"), ("חגית", "hagit"), ("לילך", "lilach"),
)
ADULT_MALE: tuple[tuple[str, str], ...] = (
    ("אבי", "avi"), ("יוסי", "yossi"), ("רוני", "roni"), ("אלון", "alon"), ("עמית", "amit"),
    ("גיא", "guy"), ("אורי", "uri"), ("איתי", "itai"), ("ערן", "eran"), ("דני", "dani"),
    ("אייל", "eyal"), ("ניר", "nir"), ("רועי", "roi"), ("עידו", "ido"), ("אסף", "asaf"),
    ("תומר", "tomer"), ("אופיר", "ofir"), ("אמיר", "amir"), ("דוד", "david"), ("יואב", "yoav"),
    ("שי", "shai"), ("אלי", "eli"), ("קובי", "kobi"), ("שחר", "shahar"), ("רן", "ran"),
    ("ירון", "yaron"), ("עופר", "ofer"), ("אריאל", "ariel"), ("נתן", "natan"), ("בועז", "boaz"),
)

FEMALE_FIRST_NAMES = frozenset(name for name, _ in ELDER_FEMALE + ADULT_FEMALE)
MALE_FIRST_NAMES = frozenset(name for name, _ in ELDER_MALE + ADULT_MALE)

# (Hebrew, Latin, relative frequency) — Cohen and Levi really are that common.
LAST_NAMES: tuple[tuple[str, str, int], ...] = (
    ("כהן", "cohen", 60), ("לוי", "levi", 40), ("מזרחי", "mizrahi", 16), ("פרץ", "peretz", 14),
    ("ביטון", "biton", 13), ("דהן", "dahan", 12), ("אברהם", "avraham", 11), ("פרידמן", "friedman", 10),
    ("מלכה", "malka", 9), ("אזולאי", "azoulay", 9), ("כץ", "katz", 9), ("יוסף", "yosef", 8),
    ("דוד", "david", 8), ("עמר", "amar", 8), ("אוחיון", "ohayon", 7), ("חדד", "hadad", 7),
    ("גבאי", "gabay", 7), ("בן דוד", "bendavid", 6), ("אדרי", "edri", 6), ("לוין", "levin", 6),
    ("טל", "tal", 6), ("קליין", "klein", 6), ("חזן", "hazan", 6), ("שפירא", "shapira", 6),
    ("מלול", "malul", 5), ("שלום", "shalom", 5), ("אשכנזי", "ashkenazi", 5), ("גולן", "golan", 5),
    ("סויסה", "swisa", 5), ("יעקב", "yaakov", 5), ("רוזנברג", "rosenberg", 5), ("ברק", "barak", 5),
    ("וקנין", "vaknin", 5), ("אלון", "alon", 4), ("שמעוני", "shimoni", 4), ("פרלמן", "perlman", 4),
    ("גולדברג", "goldberg", 4), ("זילברמן", "silberman", 4), ("נחום", "nahum", 4), ("קדוש", "kadosh", 4),
    ("ששון", "sasson", 4), ("אלמוג", "almog", 4), ("בוזגלו", "buzaglo", 4), ("ויס", "weiss", 4),
    ("רבינוביץ", "rabinovich", 4), ("הורוביץ", "horowitz", 4), ("שטרן", "stern", 4), ("גרינברג", "greenberg", 4),
    ("אוחנה", "ohana", 4), ("חביב", "haviv", 3), ("מימון", "maimon", 3), ("סעדה", "saada", 3),
    ("בירנבאום", "birnbaum", 3), ("שחר", "shahar", 3), ("נגר", "nagar", 3), ("עזרא", "ezra", 3),
    ("אהרוני", "aharoni", 3), ("יונה", "yona", 3), ("טייב", "taieb", 3), ("זכאי", "zakai", 3),
    ("ברגר", "berger", 3), ("רוזן", "rosen", 3), ("סבג", "sabag", 3), ("אלקיים", "elkayam", 3),
    ("שושן", "shushan", 3), ("בכר", "bachar", 2), ("קורן", "koren", 2), ("גרוס", "gross", 2),
)

# Hebrew city names weighted by population (thousands, rounded).
CITIES: tuple[tuple[str, int], ...] = (
    ("ירושלים", 990), ("תל אביב-יפו", 475), ("חיפה", 290), ("ראשון לציון", 260), ("פתח תקווה", 255),
    ("אשדוד", 230), ("נתניה", 230), ("באר שבע", 215), ("בני ברק", 210), ("חולון", 200),
    ("רמת גן", 170), ("בית שמש", 150), ("אשקלון", 150), ("רחובות", 150), ("בת ים", 130),
    ("הרצליה", 110), ("כפר סבא", 105), ("חדרה", 105), ("מודיעין-מכבים-רעות", 95), ("לוד", 85),
    ("רעננה", 80), ("רמלה", 80), ("נצרת", 78), ("ראש העין", 75), ("הוד השרון", 65),
    ("גבעתיים", 60), ("נהריה", 60), ("קריית אתא", 60), ("קריית גת", 60), ("עפולה", 55),
    ("יבנה", 55), ("אילת", 53), ("נס ציונה", 50), ("טבריה", 48), ("כרמיאל", 47),
    ("קריית ביאליק", 45), ("קריית מוצקין", 45), ("קריית ים", 40), ("אור יהודה", 38), ("צפת", 38),
)

# (domain, weight among customers 65+, weight among their children and caregivers).
EMAIL_PROVIDERS: tuple[tuple[str, int, int], ...] = (
    ("gmail.com", 30, 55), ("walla.co.il", 18, 10), ("hotmail.com", 9, 10), ("yahoo.com", 8, 6),
    ("bezeqint.net", 12, 4), ("012.net.il", 8, 3), ("netvision.net.il", 9, 3), ("zahav.net.il", 4, 1),
    ("outlook.com", 1, 5), ("icloud.com", 1, 3),
)
