"""The portal as a customer uses it, in headless Chromium against a real ``osfmilter web``.

Log in, register a server, add a SASL account and read its password once,
make an API token, log out; a form without its CSRF token is refused, and
a wrong password is told. The pages met on the way are saved as
docs/screenshots/*.png (README.rst shows the dashboard).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.conftest import EMAIL, PASSWORD
from tests.harness.browser import document_statuses
from tests.harness.portal import WebProcess

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NETWORK = "81.2.69.0/28"  # global unicast, as the portal demands of a customer's server
REFUSED = "192.0.2.0/24"  # documentation: never a customer's
SASL_LOGIN = "app@acme.example"
WRONG_LOGIN = "Wrong e-mail address or password."
EXPIRED = "The form has expired or did not come from this site."
NOT_THE_PASSWORD = "not the password"  # noqa: S105


def screenshot(driver: Chrome, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png")), name


def path(driver: Chrome) -> str:
    return urlsplit(driver.current_url).path


def text(driver: Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def click_to_next_page(driver: Chrome, element: WebElement) -> list[int]:
    """Click, wait until another page has loaded, and tell its HTTP statuses.

    The old page is marked; the new one has no mark. (Waiting for the old
    elements to go stale can meet Chromium between the two documents.)
    """
    document_statuses(driver)  # what came before
    driver.execute_script("window.osfOldPage = true")
    element.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.osfOldPage && document.readyState == 'complete'")
    )
    return document_statuses(driver)


def submit(driver: Chrome, form: WebElement) -> list[int]:
    """Press the form's submit button; the statuses of the answer and where it leads."""
    button = form.find_element(
        By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])"
    )
    return click_to_next_page(driver, button)


def fill(form: WebElement, **values: str) -> None:
    """Type into the inputs named so (each with the id of its name, as the contract has)."""
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        assert field.get_attribute("id") == name, name
        field.clear()
        field.send_keys(value)


def has_csrf_field(form: WebElement) -> bool:
    return bool(form.find_elements(By.CSS_SELECTOR, 'input[type="hidden"][name="csrf_token"]'))


def log_in(driver: Chrome, portal: WebProcess, password: str = PASSWORD) -> list[int]:
    driver.get(f"{portal.url}/login")
    form = driver.find_element(By.CSS_SELECTOR, 'form[action="/login"][method="post"]')
    assert form.find_element(By.ID, "password").get_attribute("type") == "password"
    assert has_csrf_field(form)
    fill(form, email=EMAIL, password=password)
    return submit(driver, form)


def go(driver: Chrome, href: str) -> None:
    """Follow the navigation link to ``href``, as a person would."""
    link = driver.find_element(By.CSS_SELECTOR, f'nav a[href="{href}"], a[href="{href}"]')
    click_to_next_page(driver, link)
    assert path(driver) == href


def cells(driver: Chrome, table_id: str) -> list[str]:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"table#{table_id} td")]


def test_a_wrong_password_is_told_and_lets_no_one_in(chromium: Chrome, portal: WebProcess) -> None:
    chromium.get(f"{portal.url}/login")
    screenshot(chromium, "login")
    assert log_in(chromium, portal, password=NOT_THE_PASSWORD) == [401]
    assert WRONG_LOGIN in text(chromium)
    assert path(chromium) == "/login"
    assert not chromium.find_elements(By.XPATH, "//h1[normalize-space()='Dashboard']")
    screenshot(chromium, "login-refused")


def test_a_customer_registers_a_server_and_a_sasl_account_and_logs_out(
    chromium: Chrome, portal: WebProcess
) -> None:
    assert log_in(chromium, portal) == [303, 200]
    assert path(chromium) == "/"
    assert chromium.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    for href in ("/", "/servers", "/sasl", "/tokens"):
        assert chromium.find_elements(By.CSS_SELECTOR, f'a[href="{href}"]'), href

    # A server: listed after the redirect, with the flash message.
    go(chromium, "/servers")
    form = chromium.find_element(By.ID, "add-server")
    assert (form.get_attribute("method"), urlsplit(form.get_attribute("action") or "").path) == (
        "post",
        "/servers",
    )
    assert has_csrf_field(form)
    fill(form, network=NETWORK, description="the web shop")
    assert submit(chromium, form) == [303, 200]
    assert path(chromium) == "/servers"
    assert chromium.find_element(By.ID, "flash").text.strip()
    assert NETWORK in cells(chromium, "servers")
    screenshot(chromium, "servers")

    # A documentation network is refused, with the reason on the page.
    form = chromium.find_element(By.ID, "add-server")
    fill(form, network=REFUSED)
    assert submit(chromium, form) == [422]
    errors = [e.text for e in chromium.find_elements(By.CLASS_NAME, "error") if e.text.strip()]
    assert errors, text(chromium)
    assert REFUSED not in cells(chromium, "servers")
    screenshot(chromium, "servers-refused")

    # A SASL account: its password is shown once, on the answer to the POST.
    go(chromium, "/sasl")
    form = chromium.find_element(By.ID, "add-sasl")
    assert (form.get_attribute("method"), has_csrf_field(form)) == ("post", True)
    fill(form, login=SASL_LOGIN)
    assert submit(chromium, form) == [200]
    password = chromium.find_element(By.ID, "new-password").text.strip()
    assert len(password) >= 16, password
    assert SASL_LOGIN in cells(chromium, "sasl-accounts")
    screenshot(chromium, "sasl")
    chromium.get(f"{portal.url}/sasl")
    assert not chromium.find_elements(By.ID, "new-password")
    assert password not in chromium.page_source
    assert SASL_LOGIN in cells(chromium, "sasl-accounts")

    # An API token: shown once too.
    go(chromium, "/tokens")
    form = chromium.find_element(By.ID, "add-token")
    assert has_csrf_field(form)
    fill(form, name="deploy script")
    assert submit(chromium, form) == [200]
    token = chromium.find_element(By.ID, "new-token").text.strip()
    assert token.startswith("osf_"), token
    assert chromium.find_elements(By.CSS_SELECTOR, "table#tokens tr")
    screenshot(chromium, "tokens")
    chromium.get(f"{portal.url}/tokens")
    assert token not in chromium.page_source

    # The dashboard shows both senders now (README.rst shows this one).
    go(chromium, "/")
    assert NETWORK in text(chromium) and SASL_LOGIN in text(chromium)
    screenshot(chromium, "dashboard")

    # Logged out, the dashboard is out of reach again.
    logout = chromium.find_element(By.ID, "logout")
    assert logout.find_element(By.XPATH, "ancestor::form").get_attribute("method") == "post"
    assert click_to_next_page(chromium, logout) == [303, 200]
    assert path(chromium) == "/login"
    chromium.get(f"{portal.url}/")
    assert not chromium.find_elements(By.XPATH, "//h1[normalize-space()='Dashboard']")
    assert chromium.find_elements(By.CSS_SELECTOR, 'form[action="/login"]')


def test_a_form_without_its_csrf_token_is_refused(chromium: Chrome, portal: WebProcess) -> None:
    assert log_in(chromium, portal) == [303, 200]
    chromium.get(f"{portal.url}/servers")
    form = chromium.find_element(By.ID, "add-server")
    chromium.execute_script("arguments[0].querySelector('input[name=csrf_token]').remove()", form)
    assert not form.find_elements(By.NAME, "csrf_token")
    fill(form, network="81.2.69.64/28")
    assert submit(chromium, form) == [403]
    assert EXPIRED in text(chromium)
    screenshot(chromium, "csrf-refused")
    chromium.get(f"{portal.url}/servers")
    assert "81.2.69.64/28" not in cells(chromium, "servers")
