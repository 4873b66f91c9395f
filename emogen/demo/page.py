"""The demo's single page: a form, a progress bar, the images (plain HTML + fetch, no CDN)."""

from __future__ import annotations

from html import escape

from emogen.emotions import EMOTIONS
from emogen.limits import DEMO_MAX_IMAGES, MIN_IMAGES

_OPTIONS = "".join(f"<option>{name}</option>" for name in EMOTIONS)

_SCRIPT = """
const form = document.getElementById('form');
const bar = document.getElementById('progress');
const status = document.getElementById('status');
const gallery = document.getElementById('gallery');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = document.getElementById('generate');
  const data = Object.fromEntries(new FormData(form).entries());
  gallery.replaceChildren();
  status.textContent = 'generating…';
  status.className = '';
  bar.value = 0;
  button.disabled = true;
  try {
    const response = await fetch('generate', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                               body: JSON.stringify(data)});
    if (!response.ok) {
      const body = await response.json();
      throw new Error(body.error || response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let newline;
      while ((newline = buffer.indexOf('\\n')) >= 0) {
        const message = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (message.total !== undefined) { bar.max = message.total; }
        if (message.image) {
          const figure = document.createElement('figure');
          const img = document.createElement('img');
          img.src = message.image; img.alt = message.caption; img.className = 'generated';
          const caption = document.createElement('figcaption');
          caption.textContent = message.caption;
          figure.append(img, caption);
          gallery.append(figure);
          bar.value = message.done;
          status.textContent = `${message.done} / ${bar.max} images`;
        }
        if (message.error) throw new Error(message.error);
      }
    }
    status.textContent = `done: ${gallery.children.length} images`;
    status.className = 'done';
  } catch (error) {
    status.textContent = 'error: ' + error.message;
    status.className = 'error';
  } finally {
    button.disabled = false;
  }
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 60em; color: #222; }
form { display: grid; grid-template-columns: max-content 16em; gap: 0.4em 1em; align-items: center; }
#gallery { display: flex; flex-wrap: wrap; gap: 0.5em; margin-top: 1em; }
figure { margin: 0; text-align: center; font-size: 0.8em; }
img.generated { width: 128px; height: 128px; image-rendering: pixelated; border: 1px solid #ccc; }
.error { color: #a33; } progress { width: 20em; }
"""


def render_page(model: str, size: int) -> str:
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>EmoGen demo</title>
<style>{_STYLE}</style></head><body>
<h1>EmoGen demo</h1><p>Model: <code>{escape(model)}</code> ({size} px images). The model is loaded once; each
press generates with the seeds shown.</p>
<form id="form">
<label for="emotion">emotion</label><select id="emotion" name="emotion">{_OPTIONS}</select>
<label for="intensity">intensity (0 neutral, 1 the emotion, &gt;1 beyond)</label>
<input id="intensity" name="intensity" type="number" min="0" max="3" step="0.1" value="1">
<label for="template">template ({{}} = the emotion)</label><input id="template" name="template" value="{{}}">
<label for="partner">fusion partner</label><select id="partner" name="partner"><option value="">none</option>{_OPTIONS}</select>
<label for="weight">partner weight w</label><input id="weight" name="weight" type="number" min="0" max="1" step="0.05" value="0.5">
<label for="seed">seed (image n: seed + n)</label><input id="seed" name="seed" type="number" min="0" value="0">
<label for="num_images">number of images</label><input id="num_images" name="num_images" type="number" min="{MIN_IMAGES}" max="{DEMO_MAX_IMAGES}" value="4">
<span></span><button id="generate" type="submit">Generate</button>
</form>
<p><progress id="progress" value="0" max="1"></progress> <span id="status"></span></p>
<div id="gallery"></div>
<script>{_SCRIPT}</script></body></html>
"""
