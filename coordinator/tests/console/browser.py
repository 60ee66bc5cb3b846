"""Drive the Switchyard console in headless Chromium through WebDriver.

Launched by coordinator/tests/console.rs with a real server and lab:
    browser.py URL OPERATOR_TOKEN STORE MEMBERS_JSON TARGET SCREENSHOT_DIR \
               APPROVER_TOKEN POLICY_FILE ORIGIN
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
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import Select, WebDriverWait

url, operator, store, members_json, target, shots, approver, policy_file, origin = sys.argv[1:10]
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
# The viewport itself is 1280x800 (a window of that size has less room
# inside): what the page is checked and photographed at.
DESKTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
wait = WebDriverWait(driver, WAIT)
seen = {}


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def css(sel):
    return driver.find_elements(By.CSS_SELECTOR, sel)


# Every element a keyboard user can reach, in document order, visible.
TABBABLE_JS = """
const sel = 'a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea, [tabindex]';
return [...document.querySelectorAll(sel)].filter(e => {
  if (e.tabIndex < 0 || e.closest('[hidden], dialog:not([open])')) return false;
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
});
"""

FOCUS_JS = """
const e = document.activeElement;
if (!e || e === document.body) return null;
const cs = getComputedStyle(e);
const r = e.getBoundingClientRect();
return {tag: e.tagName.toLowerCase(), text: (e.id || e.textContent || '').trim().slice(0, 60),
        outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2,
        visible: r.width > 0 && r.height > 0};
"""


def tab_audit(view):
    """Tab through the whole page from its start: every reachable element
    comes in document order, each shows a visible focus ring, every button
    of the view is reached. Returns what a keyboard user met."""
    expected = driver.execute_script(TABBABLE_JS)
    if any(int(e.get_attribute("tabindex") or 0) > 0 for e in expected):
        fail(f"{view}: a positive tabindex reorders the page")
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    body = css("body")[0]
    met = []
    for _ in range(len(expected) + 2):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        el = driver.switch_to.active_element
        if el == body or (met and el == met[0][0]):
            break
        f = driver.execute_script(FOCUS_JS)
        if f is None:
            break
        met.append((el, f))
    order = [e for e, _ in met]
    if order != expected:
        fail(f"{view}: tab order {[f['text'] for _, f in met]} is not the document order "
             f"{[e.get_attribute('id') or e.text for e in expected]}")
    for _, f in met:
        if not f["outline"]:
            fail(f"{view}: {f} gets focus without a visible focus ring")
    buttons = [b for b in css("#view button, #alerts button") if b.is_displayed() and b.is_enabled()]
    missing = [b.text for b in buttons if b not in order]
    if missing:
        fail(f"{view}: buttons no keyboard reaches: {missing}")
    return [f["text"] for _, f in met]


LAYOUT_JS = """
const vw = window.innerWidth;
const out = {viewport: [vw, window.innerHeight], page_width: document.documentElement.scrollWidth,
             small_text: [], clipped: []};
for (const e of document.querySelectorAll('body *')) {
  if (e.closest('[hidden], dialog:not([open])')) continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (own && parseFloat(getComputedStyle(e).fontSize) < 12) out.small_text.push(e.tagName + ': ' + e.textContent.trim().slice(0, 40));
  // Controls must fit the screen; a table may scroll sideways in its own box.
  // (The skip link waits off screen until it has the focus.)
  if (e.matches('a[href], button, input, select') && !e.matches('.skip:not(:focus)') && !e.closest('.scroll') && (r.left < -1 || r.right > vw + 1))
    out.clipped.push((e.id || e.textContent.trim()).slice(0, 40) + ' at ' + Math.round(r.left) + '..' + Math.round(r.right));
}
return out;
"""


def layout(view, size):
    """Readable at this size: no sideways page scroll, no text under 12 px,
    every control inside the screen."""
    got = driver.execute_script(LAYOUT_JS)
    if got["page_width"] > got["viewport"][0] + 1:
        fail(f"{view} at {size}: the page is {got['page_width']} px wide in a {got['viewport'][0]} px viewport")
    if got["small_text"]:
        fail(f"{view} at {size}: text under 12 px: {got['small_text'][:5]}")
    if got["clipped"]:
        fail(f"{view} at {size}: controls outside the screen: {got['clipped'][:5]}")
    return got["viewport"]


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
    # Read in one go: the view follows every observer round (SSE), so
    # elements found one call earlier may be gone.
    topo = driver.execute_script("""
      const row = document.querySelector(arguments[0]);
      const regions = [...document.querySelectorAll('#topology thead th')].slice(1).map(e => e.textContent);
      const byCol = {};
      [...row.querySelectorAll('td')].forEach((td, i) => {
        byCol[regions[i]] = [...td.querySelectorAll('[data-member]')].map(e => e.dataset.member); });
      const roles = {};
      for (const e of row.querySelectorAll('[data-member]')) roles[e.dataset.member] = e.dataset.role;
      return {regions, byCol, roles};
    """, f'#topology tr[data-store="{store}"]')
    seen["topology_members"] = topo["roles"]
    seen["regions"] = topo["regions"]
    seen["members_by_column"] = topo["byCol"]
    shot("topology")

    # 2. Plans, no token: the preview is a read; starting is refused (401)
    # and the page asks for a token.
    driver.get(url + "/#/plans")
    wait.until(lambda d: css("#plan-to"))
    Select(css("#plan-to")[0]).select_by_value(target)
    css("#plan-preview")[0].click()
    wait.until(lambda d: css("#plan-out:not([data-busy]) #plan-text"))
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
    wait.until(lambda d: css("#plan-out:not([data-busy]) #plan-text"))
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
    row = css(f'#history tr[data-execution="{seen["execution"]}"]')[0]
    seen["history_row"] = row.text
    seen["history_started_by"] = row.find_element(By.CSS_SELECTOR, '[data-col="started-by"]').text
    seen["history_duration"] = row.find_element(By.CSS_SELECTOR, '[data-col="duration"]').text
    shot("history")

    # 6. The policy now wants a second person for this store: a start from
    # the page (back to the origin) waits for approval, touching nothing.
    with open(policy_file, "w") as f:
        f.write('[approvals]\ntags = ["payments"]\n')
    driver.get(url + "/#/topology")
    driver.get(url + "/#/plans")
    wait.until(lambda d: css("#plan-to"))
    Select(css("#plan-to")[0]).select_by_value(origin)
    css("#plan-preview")[0].click()
    wait.until(lambda d: css("#plan-out:not([data-busy]) #plan-text"))
    seen["cli_preview"] = css("#plan-preview-text")[0].text if css("#plan-preview-text") else ""
    css("#plan-start")[0].click()
    wait.until(lambda d: css("#confirm[open]"))
    css("#confirm-ok")[0].click()
    wait.until(lambda d: css("#plan-pending"))
    seen["pending_message"] = css("#plan-pending")[0].text
    shot("plans-pending-approval")

    # 7. The approvals view lists it, with who asked and why.
    driver.get(url + "/#/approvals")
    wait.until(lambda d: css("[data-approval]"))
    item = css("[data-approval]")[0]
    seen["approval"] = {"id": item.get_attribute("data-approval"),
                        "requester": item.find_element(By.CSS_SELECTOR, ".requester").text,
                        "reasons": [li.text for li in item.find_elements(By.CSS_SELECTOR, ".reasons li")]}
    seen["pending_banner"] = bool(css('[data-alert="pending-approval"]'))
    shot("approvals")

    # 8. Readable at 1280x800 and on a phone, every view; keyboard-only use
    # reaches every control in order with a visible focus ring.
    views = [("topology", "/#/topology", "#topology"), ("plans", "/#/plans", "#plan-to"),
             ("execution", "/#/executions/" + seen["execution"], "#report-status"),
             ("history", "/#/history", "#history"), ("approvals", "/#/approvals", "[data-approval]")]
    seen["keyboard"] = {}
    seen["layout"] = {}
    for name, path, ready in views:
        driver.get(url + "/#/history" if name != "history" else url + "/#/topology")
        driver.get(url + path)
        wait.until(lambda d: css(ready))
        seen["keyboard"][name] = tab_audit(name)
        seen["layout"][name + "@desktop"] = layout(name, "1280x800")
    # A finished execution opens its timeline from the journal: every
    # operation with its outcome, every checkpoint with its state.
    driver.get(url + "/#/history")
    driver.get(url + "/#/executions/" + seen["execution"])
    wait.until(lambda d: css("#report-status"))
    seen["timeline"] = driver.execute_script("""
      return {ops: [...document.querySelectorAll('#stages .ops li')].map(li => li.dataset.outcome),
              checkpoints: [...document.querySelectorAll('#stages .checkpoint')].map(c => c.dataset.state)};""")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    for name, path, ready in views:
        driver.get(url + "/#/history" if name != "history" else url + "/#/topology")
        driver.get(url + path)
        wait.until(lambda d: css(ready))
        seen["layout"][name + "@phone"] = layout(name, "390x844")
        shot("phone-" + name)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)

    # 9. With the operator's token the API refuses to approve (403): the
    # page says so and nothing changes. Keyboard only: Tab to the button,
    # Enter.
    def approve_by_keyboard():
        driver.get(url + "/#/history")
        driver.get(url + "/#/approvals")
        target_id = seen["approval"]["id"]
        wait.until(lambda d: css(f'[data-approve="{target_id}"]'))
        driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
        # Compare by what the focused element is, not by a reference a
        # re-render may have replaced.
        for _ in range(60):
            ActionChains(driver).send_keys(Keys.TAB).perform()
            if driver.execute_script("return document.activeElement && document.activeElement.dataset.approve") == target_id:
                break
        else:
            fail("the Approve button is not reachable by keyboard")
        ActionChains(driver).send_keys(Keys.ENTER).perform()

    def approve_until(cond):
        # On a loaded machine the view can be rendered again under the
        # key press; press again (each attempt is journaled, refusals too).
        for _ in range(3):
            approve_by_keyboard()
            try:
                WebDriverWait(driver, 60).until(cond)
                return
            except Exception:  # noqa: BLE001 - retried, then reported
                continue
        fail("pressing Approve showed nothing")

    approve_until(lambda d: css(".approval-error") and css(".approval-error")[0].text)
    seen["operator_approve"] = css(".approval-error")[0].text

    # 10. Without a token: 401, and the page asks for one. An approver's
    # token, entered in the page, approves; the server runs it.
    css("#signout")[0].click()
    wait.until(lambda d: not css("#signout")[0].is_displayed())
    approve_until(lambda d: css(".approval-error") and css(".approval-error")[0].text)
    seen["anonymous_approve"] = css(".approval-error")[0].text
    seen["login_shown_for_approve"] = css("#login")[0].is_displayed()
    css("#token")[0].send_keys(approver)
    css("#token-save")[0].click()
    wait.until(lambda d: not css("#login")[0].is_displayed())
    approve_until(lambda d: "#/executions/" in d.current_url)
    seen["approved_execution"] = driver.current_url.split("#/executions/")[1]
    wait.until(lambda d: css("#exec-status") and css("#exec-status")[0].text not in ("running", "pending_approval", ""))
    wait.until(lambda d: css("#report-status"))
    seen["approved_status"] = css("#exec-status")[0].text

    # 11. The history, both executions.
    driver.get(url + "/#/history")
    wait.until(lambda d: css(f'#history tr[data-execution="{seen["approved_execution"]}"]'))
    shot("history")
except Exception as e:  # noqa: BLE001 - the reason goes back to the Rust test
    fail(f"{type(e).__name__}: {e}")

print(json.dumps(seen))
driver.quit()
