"""How fast the one renderer turns a typical Hebrew newsletter into a message for one contact.

    .venv/bin/python bench/render_messages.py [--renders 20000]

Each render is what a campaign does per contact: subject, HTML in the layout with CSS inlined,
plain-text part, every link rewritten for click tracking, the open pixel. Contexts are made by
hand (no database), so the figure is the renderer's alone, on one core.
"""

from __future__ import annotations

import argparse
import time

from kesher.messages.context import sample_context
from kesher.messages.render import Content, Renderer

STYLE = """<style>
.hero { background-color: #fef3c7; padding: 16px; border-radius: 8px; }
.cta { display: inline-block; background-color: #b91c1c; color: #ffffff; padding: 12px 24px; border-radius: 6px;
       text-decoration: none; font-weight: bold; }
.article h2 { font-size: 20px; color: #111827; }
.article p { font-size: 16px; color: #374151; }
.muted { color: #6b7280; font-size: 13px; }
</style>"""

ARTICLE = """
<div class="article">
  <img src="https://cdn.example.co.il/news/{n}.jpg" width="552" height="276" alt="תמונה לכתבה {n}">
  <h2>טיפ מספר {n}: איך לשמור על אנרגיה לאורך כל היום</h2>
  <p>שגרה עמוסה, עבודה מול מסך וחוסר שינה שוחקים את כולנו. ריכזנו עבורכם כמה הרגלים פשוטים שעוזרים
  להרגיש טוב יותר כבר מהשבוע הבא: שתייה מרובה, הליכה קצרה אחרי הצהריים, ארוחת בוקר עשירה בחלבון
  וזמן קבוע לשינה. {{{{ contact.first_name | default("חברים") }}}}, אנחנו בטוחים שגם אתם תרגישו בהבדל.</p>
  <p>מה דעתכם? אפשר פשוט להשיב למייל הזה ולספר לנו, אנחנו קוראים כל תשובה.
  <a href="https://shop.example.co.il/blog/tip-{n}?utm_content=article">להמשך קריאה באתר</a></p>
</div>"""

BODY = STYLE + """
<div class="hero">
  <h1>שלום [[שם פרטי|חבר/ה]], הניוזלטר של {{ sender.name }} לחודש הזה</h1>
  <p>החודש בחרנו עבורך מוצרים חדשים, טיפים לבריאות ושגרה טובה יותר, והטבה מיוחדת ללקוחות שלנו ב[[עיר|כל הארץ]].</p>
  <p><a class="cta" href="https://shop.example.co.il/sale?utm_source=kesher">לכל ההטבות</a></p>
</div>
""" + "".join(ARTICLE.format(n=n) for n in range(1, 6)) + """
{% segment "VIP" %}
<p class="hero">כלקוח/ה VIP מחכה לך הנחה נוספת של 10% בקוד VIP10 עד סוף החודש.</p>
{% else %}
<p>הצטרפו למועדון הלקוחות שלנו ותיהנו מהטבות קבועות. <a href="https://shop.example.co.il/club">להצטרפות</a></p>
{% endsegment %}
<h2>הכי נמכרים החודש</h2>
{{ products.best_sellers(3) }}
{% if rollups.purchase_count > 2 %}
<p class="muted">תודה שקנית אצלנו כבר {{ rollups.purchase_count }} פעמים!</p>
{% endif %}
<p class="muted">שאלות? כתבו לנו ל-<a href="mailto:info@shop.example.co.il">info@shop.example.co.il</a>
או התקשרו <a href="tel:+97231234567">03-1234567</a>.</p>
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=20000)
    args = parser.parse_args()
    content = Content(subject="פרסומת: [[שם פרטי]], ההטבות של החודש מחכות לך", html=BODY,
                      preheader="טיפים, מוצרים חדשים והנחה מיוחדת")
    started = time.perf_counter()
    renderer = Renderer(content)
    compiled = time.perf_counter() - started
    contexts = []
    for i in range(100):
        context = sample_context("he")
        context["contact"] = {**context["contact"], "id": i, "first_name": f"דנה{i}"}
        context["segments"] = frozenset({"VIP"}) if i % 3 == 0 else frozenset()
        context["unsubscribe_url"] = f"https://k.example/u/{i:024d}"
        context["preferences_url"] = f"https://k.example/p/{i:024d}"
        contexts.append(context)
    one = renderer.render(contexts[0], link=lambda url: f"https://k.example/c/{url}", pixel_url="https://k.example/o.gif")
    print(f"template {len(content.html.encode()):,} bytes; message {len(one.html.encode()):,} bytes HTML, "
          f"{len(one.text.encode()):,} bytes text, {len(one.links)} links; "
          f"CSS inlined at compile time: {renderer.css_at_compile_time}; compiled in {compiled * 1000:.1f} ms")
    started = time.perf_counter()
    for i in range(args.renders):
        n = i % 100
        renderer.render(contexts[n], link=lambda url, n=n: f"https://k.example/c/{n}/{url}",
                        pixel_url=f"https://k.example/o/{n}.gif")
    elapsed = time.perf_counter() - started
    print(f"{args.renders:,} renders in {elapsed:.2f} s: {args.renders / elapsed:,.0f} renders/s on one core")


if __name__ == "__main__":
    main()
