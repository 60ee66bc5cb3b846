"""Drive the Switchyard console in headless Chromium through WebDriver.

Launched by coordinator/tests/console.rs with a real server and lab:
    browser.py URL OPERATOR_TOKEN STORE MEMBERS_JSON TARGET SCREENSHOT_DIR
Prints one JSON line (what it saw) for the Rust test to check against the
server and the stores; exits non-zero with the reason when the page does not
behave.
"""
import json
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

url, operator, store, members_json, target, shots = sys.argv[1:7]
members = json.loads(members_json)
# Generous: two loaded cores, a real PostgreSQL failover.
WAIT = 240

profile = tempfile.mkdtemp(prefix="switchyard-chromium-")
opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,800"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service(os.environ.get("SWITCHYARD_CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=opts)
wait = WebDriverWait(driver, WAIT)
seen = {}


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def css(sel):
    return driver.find_elements(By.CSS_SELECTOR, sel)


def fail(why):
    print(json.dumps({"error": why, "page": driver.find_element(By.TAG_NAME, "body").text[:4000]}))
    driver.quit()
    sys.exit(1)


try:
    # 1. Topology, read anonymously (the server runs --anonymous-read): the
    # lab's store as a row, each of its members in its region's column.
    driver.get(url + "/")
    wait.until(lambda d: css(f'#topology tr[data-store="{store}"] [data-member]'))
    wait.until(lambda d: len(css(f'#topology tr[data-store="{store}"] [data-member]')) == len(members))
    shown = {e.get_attribute("data-member"): e.get_attribute("data-role")
             for e in css(f'#topology tr[data-store="{store}"] [data-member]')}
    seen["topology_members"] = shown
    seen["regions"] = [e.text for e in css("#topology thead th")][1:]
    seen["members_by_column"] = {}
    cols = seen["regions"]
    for i, td in enumerate(css(f'#topology tr[data-store="{store}"] td')):
        seen["members_by_column"][cols[i]] = [e.get_attribute("data-member") for e in td.find_elements(By.CSS_SELECTOR, "[data-member]")]
    shot("topology")

    # 2. Plans, no token: the preview is a read; starting is refused (401)
    # and the page asks for a token.
    driver.get(url + "/#/plans")
    wait.until(lambda d: css("#plan-to"))
    Select(css("#plan-to")[0]).select_by_value(target)
    css("#plan-preview")[0].click()
    wait.until(lambda d: css("#plan-text"))
    seen["preview_has_store"] = store in css("#plan-text")[0].text
    css("#plan-start")[0].click()
    wait.until(lambda d: css("#confirm[open]"))
    seen["confirm_stores"] = [e.text for e in css("#confirm-stores li")]
    shot("plans")
    css("#confirm-ok")[0].click()
    wait.until(lambda d: css("#confirm-error")[0].text)
    seen["anonymous_start"] = css("#confirm-error")[0].text
    seen["login_shown"] = css("#login")[0].is_displayed()
    css("#confirm-cancel")[0].click()

    # 3. Enter the operator token once; start from the page.
    css("#token")[0].send_keys(operator)
    css("#token-save")[0].click()
    wait.until(lambda d: not css("#login")[0].is_displayed())
    # Through another view, so the Plans view is rendered afresh (a hash
    # equal to the current one fires no hashchange, and the re-render after
    # the token would replace the elements under the driver's hands).
    driver.get(url + "/#/history")
    wait.until(lambda d: css("#history, #history-empty"))
    driver.get(url + "/#/plans")
    wait.until(lambda d: css("#plan-to"))
    Select(css("#plan-to")[0]).select_by_value(target)
    css("#plan-preview")[0].click()
    wait.until(lambda d: css("#plan-text"))
    css("#plan-start")[0].click()
    wait.until(lambda d: css("#confirm[open]"))
    css("#confirm-ok")[0].click()
    wait.until(lambda d: "#/executions/" in d.current_url)
    seen["execution"] = driver.current_url.split("#/executions/")[1]

    # 4. Execution: checkpoints light up as validated, in stage order.
    wait.until(lambda d: css("#exec-status") and css("#exec-status")[0].text not in ("running", ""))
    wait.until(lambda d: css("#report-status"))
    seen["status"] = css("#exec-status")[0].text
    seen["checkpoints"] = [{"stage": c.get_attribute("data-stage"), "state": c.get_attribute("data-state"),
                            "lit_order": c.get_attribute("data-lit-order")}
                           for c in css("#stages .checkpoint")]
    seen["ops"] = [{"outcome": li.get_attribute("data-outcome"), "text": li.text} for li in css("#stages .ops li")]
    seen["report_stores"] = [r.text for r in css("#report-stores tbody tr")]
    shot("execution")

    # 5. History lists it.
    driver.get(url + "/#/history")
    wait.until(lambda d: css(f'#history tr[data-execution="{seen["execution"]}"]'))
    seen["history_row"] = css(f'#history tr[data-execution="{seen["execution"]}"]')[0].text
    shot("history")
except Exception as e:  # noqa: BLE001 - the reason goes back to the Rust test
    fail(f"{type(e).__name__}: {e}")

print(json.dumps(seen))
driver.quit()
