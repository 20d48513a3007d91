"""Every main dashboard page, in a real browser, checked for what a screen-reader or
keyboard user needs: each visible form control has an accessible name (a <label>, or
aria-label / aria-labelledby), each page has one <h1> and a <main> landmark, images
have alt text, buttons and links say what they do, and the page logs no console error
(a CSP violation included)."""

import pytest

from campaigns.models import Drip
from leads.tests.factories import LeadFactory, TagFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = [
    "/",
    "/leads",
    "/leads/new",
    "{lead}",
    "{lead}/edit",
    "/contacts",
    "/contacts/tags",
    "/leads/import",
    "/broadcasts",
    "/broadcasts/new",
    "/drips",
    "/drips/new",
    "/scheduled",
    "/scheduled/new",
    "/analytics",
    "/settings/whatsapp",
    "/team",
    "/team/new",
]

# Runs in the page: the problems a user of assistive technology would meet.
AUDIT = """() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const named = (el) =>
    (el.labels && el.labels.length > 0) ||
    (el.getAttribute('aria-label') || '').trim() !== '' ||
    (el.getAttribute('aria-labelledby') || '').trim() !== '' ||
    (el.getAttribute('title') || '').trim() !== '';
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || !visible(el)) continue;
    if (!named(el)) problems.push(`unlabelled ${el.tagName.toLowerCase()} name=${el.name || el.id}`);
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!visible(el)) continue;
    const text = (el.innerText || el.textContent || '').trim() || (el.getAttribute('aria-label') || '').trim()
      || (el.getAttribute('title') || '').trim()
      || Array.from(el.querySelectorAll('img')).map((img) => img.alt).join('').trim();
    if (!text) problems.push(`${el.tagName.toLowerCase()} without text: ${el.outerHTML.slice(0, 80)}`);
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) problems.push(`img without alt: ${img.src}`);
  }
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(`${h1} h1 headings`);
  if (!document.querySelector('main')) problems.push('no <main> landmark');
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  return problems;
}"""


def test_every_main_page_names_its_controls_and_has_its_landmarks(owner_page, account, owner):
    tag = TagFactory(account=account, name="VIP")
    lead = LeadFactory(account=account, tags=[tag])
    LeadFactory.create_batch(3, account=account)
    Drip.objects.create(account=account, name="Welcome series")
    page = owner_page
    found = {}
    for path in PAGES:
        url = path.format(lead=f"/leads/{lead.pk}")
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        problems = page.evaluate(AUDIT)
        if problems:
            found[url] = problems
    assert found == {}
    assert page.console_errors == []
