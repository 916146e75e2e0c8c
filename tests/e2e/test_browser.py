"""The shop in real headless Chromium, paid from the simulator's page.

A customer opens the shop, picks a product, sees a QR code; the payer
(the simulator's page in a second tab) scans and pays with one click;
the checkout page turns to "Paid" by itself, without a reload.
Screenshots go to ``test-output/`` (git-ignored).
"""

import os
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.processes import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("WXPAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-output"
# Milliseconds; the page polls every 1.5 s.
PAID_WITHIN = 15_000
QR_LOADED = "() => { const i = document.getElementById('qr');" + (
    " return i.complete && i.naturalWidth > 0; }"
)


def missing(reason):
    message = f"{reason}; run scripts/ensure-system-deps to install it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing(f"Chromium is not at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 900, "height": 900})
    context.set_default_timeout(10_000)
    yield context
    context.close()


def watch_for_errors(page):
    errors = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def pay_on_the_simulators_page(context, simulator_url, qr_content):
    """The payer's single click: scan the code and pay, in another tab."""
    payer = context.new_page()
    payer.goto(simulator_url + "/")
    payer.fill("input[name=qr]", qr_content)
    payer.click("form[action='/ui/scan'] button")
    payer.wait_for_url("**/?notice=*")
    notice = payer.locator("p").first.inner_text()
    payer.close()
    return notice


@pytest.mark.parametrize(
    ("mode", "product_id", "name"),
    [(2, "P001", "checkout"), (1, "P002", "checkout-mode-1")],
    ids=["mode 2", "mode 1"],
)
def test_a_customer_pays_on_the_page_and_sees_paid(
    stack, context, mode, product_id, name
):
    from playwright.sync_api import expect

    SCREENSHOTS.mkdir(exist_ok=True)
    page = context.new_page()
    errors = watch_for_errors(page)

    page.goto(stack.url + "/")
    page.click(f"#pay-{mode}-{product_id}")
    page.wait_for_url("**/checkout/*")
    page.wait_for_function(QR_LOADED)
    checkout = page.locator("main#checkout")
    expect(checkout).to_have_attribute("data-mode", str(mode))
    expect(checkout).to_have_attribute("data-status", "NOTPAY")
    qr_content = page.inner_text("#qr-content").strip()
    assert qr_content.startswith("weixin://wxpay/bizpayurl?")
    page.screenshot(path=str(SCREENSHOTS / f"{name}-qr.png"))

    notice = pay_on_the_simulators_page(context, stack.simulator.url, qr_content)

    assert notice.startswith("支付成功"), notice
    expect(page.locator("#status")).to_have_text("Paid", timeout=PAID_WITHIN)
    expect(page.locator("body")).to_have_attribute("data-status", "SUCCESS")
    expect(checkout).to_have_attribute("data-status", "SUCCESS")
    page.screenshot(path=str(SCREENSHOTS / f"{name}-paid.png"))
    checkout_id = checkout.get_attribute("data-checkout-id")
    assert stack.view(checkout_id)["status"] == "SUCCESS"
    assert errors == []
