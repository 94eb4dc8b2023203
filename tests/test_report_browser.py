"""The evaluation report in a real browser: headless Chromium through selenium and the
Debian chromium-driver (`make browser-tools`, which `make test` runs)."""

import json
import shutil

import pytest
from test_evaluate import LLARA_RESULT


@pytest.fixture(scope="module")
def report(bundle, synthetic_dataset, synthetic_split, tmp_path_factory):
    from llarapp.eval.champion import compare_with_champion
    from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
    from llarapp.eval.sections import llara_section
    from llarapp.models.baselines import BaselinesConfig, run_baselines

    root = tmp_path_factory.mktemp("browser")
    run_baselines(BaselinesConfig(), synthetic_dataset, synthetic_split, root / "recs")
    (root / "llara").mkdir()
    (root / "llara" / "metrics.json").write_text(json.dumps(LLARA_RESULT))
    champion = compare_with_champion(bundle, synthetic_dataset, synthetic_split, "llarapp",
                                     f"sqlite:///{root / 'mlflow.db'}", 0.01, 200, 50)
    run_evaluate(EvaluateConfig(track=False, gate_model="popularity"), synthetic_dataset,
             synthetic_split, [root / "recs"], root / "eval",
             sections=[llara_section(root / "llara")], champion=champion,
             manifest=bundle.manifest)
    return root / "eval" / "report.html"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "headless Chromium is missing: run `make browser-tools`"
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,2000"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def test_the_report_opens_with_the_verdict_and_every_plot_loads(report, browser, bundle):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h1, h2")]
    assert headings[0].startswith("LLaRA++ evaluation")
    assert headings[1] == "Verdict: DEPLOY"  # no champion, the floor and parity pass
    text = browser.execute_script("return document.body.innerText")
    summary = text[:text.index("Headline metrics")]
    assert f"serves {bundle.ranker_kind}" in summary
    assert "floor: popularity ndcg" in summary and "no champion" in summary
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
        "i.dataset.legendOverlaps, i.alt])")
    assert len(images) >= 5
    for complete, width, overlaps, title in images:
        assert complete and width > 0, f"{title}: the image did not load"
        assert overlaps == "0", f"{title}: a legend covers another plot"
    first_image = browser.find_elements(By.TAG_NAME, "img")[0]
    verdict = browser.find_elements(By.CSS_SELECTOR, "h1, h2")[1]
    assert verdict.location["y"] < first_image.location["y"]  # the summary comes first
