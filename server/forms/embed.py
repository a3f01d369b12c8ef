"""The embed snippet: a plain <form> plus a small inline script (no external dependencies)
that posts the values as JSON to the public endpoint and shows the outcome.

Everything a form's owner typed (labels, options, messages) is escaped here: the snippet
goes onto their customers' pages, so a label must never become markup or script."""

from __future__ import annotations

import json
import secrets
from html import escape

from server.forms.definition import Form, FormField

# The trap input people never see; bots that fill every input fill it too.
HONEYPOT_NAMES = ("website", "homepage", "url")
_AUTOCOMPLETE = {
    "email": "email",
    "first_name": "given-name",
    "last_name": "family-name",
    "title": "organization-title",
    "phone": "tel",
    "company": "organization",
}
_INPUT_TYPES = {"email": "email", "text": "text", "phone": "tel"}

_STYLE = """
#{id} .tnx-field {{ margin: 0 0 .75em; }}
#{id} .tnx-field > label {{ display: block; margin-bottom: .25em; }}
#{id} [aria-invalid="true"] {{ outline: 2px solid #c0392b; }}
#{id} .tnx-trap {{ position: absolute; left: -10000px; width: 1px; height: 1px;
  overflow: hidden; }}
#{id} .tnx-form-status[data-state="error"] {{ color: #c0392b; }}
"""

# Runs once where the snippet is pasted. ES2015 and fetch only, so any current browser runs
# it without a build step; the two placeholders are replaced with JSON literals (the root
# id first: the config holds text the form's owner wrote).
_SCRIPT = """
(function () {
  var cfg = __TNX_CONFIG__;
  var root = document.getElementById(__TNX_ROOT_ID__);
  if (!root) { return; }
  var form = root.querySelector("form");
  var status = root.querySelector(".tnx-form-status");
  var button = form.querySelector("button[type=submit]");
  function show(text, failed) {
    status.textContent = text;
    status.setAttribute("data-state", failed ? "error" : "ok");
    status.hidden = false;
  }
  function markInvalid(body) {
    var inputs = form.querySelectorAll("[aria-invalid]");
    for (var i = 0; i < inputs.length; i++) { inputs[i].removeAttribute("aria-invalid"); }
    (body.details || []).forEach(function (detail) {
      (detail.field_violations || []).forEach(function (violation) {
        var input = form.elements.namedItem(String(violation.field).replace(/^fields\\./, ""));
        if (input && input.setAttribute) { input.setAttribute("aria-invalid", "true"); }
      });
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var values = {};
    cfg.fields.forEach(function (field) {
      var input = form.elements.namedItem(field.name);
      if (input) { values[field.name] = field.type === "checkbox" ? input.checked : input.value; }
    });
    var trap = form.elements.namedItem(cfg.honeypot);
    button.disabled = true;
    fetch(cfg.url, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        token: cfg.token,
        fields: values,
        honeypot: trap ? trap.value : "",
        page_url: window.location.href
      })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { ok: response.ok, body: body || {} };
      });
    }).then(function (result) {
      if (result.ok) {
        var next = result.body.redirect_url || cfg.redirect;
        if (next) { window.location.assign(next); return; }
        form.hidden = true;
        show(result.body.success_message || cfg.success, false);
        return;
      }
      button.disabled = false;
      markInvalid(result.body);
      show(result.body.message || "The form could not be sent. Please try again.", true);
    }, function () {
      button.disabled = false;
      show("The form could not be sent. Check your connection and try again.", true);
    });
  });
})();
"""


def _json_literal(value: object) -> str:
    """JSON that is also safe inside <script>: no `</script>`, comment or entity openers."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _attrs(**values: str | bool) -> str:
    parts = []
    for name, value in values.items():
        key = name.rstrip("_").replace("_", "-")
        if value is True:
            parts.append(key)
        elif value:
            parts.append(f'{key}="{escape(str(value), quote=True)}"')
    return " ".join(parts)


def _label(item: FormField, input_id: str) -> str:
    mark = ' <span aria-hidden="true">*</span>' if item.required else ""
    return f'<label for="{input_id}">{escape(item.label)}{mark}</label>'


def _field(item: FormField, input_id: str) -> str:
    common: dict[str, str | bool] = {"id": input_id, "name": item.name, "required": item.required}
    if item.type == "hidden":
        return f"<input {_attrs(type='hidden', name=item.name, value=item.default_value)}>"
    if item.type == "checkbox":
        box = _attrs(type="checkbox", **common, checked=item.default_value == "true")
        mark = ' <span aria-hidden="true">*</span>' if item.required else ""
        return (
            f'<div class="tnx-field"><label><input {box}> {escape(item.label)}{mark}</label></div>'
        )
    if item.type == "select":
        choices = ['<option value="">—</option>'] + [
            f"<option {_attrs(value=option, selected=option == item.default_value)}>"
            f"{escape(option)}</option>"
            for option in item.options
        ]
        return (
            f'<div class="tnx-field">{_label(item, input_id)}'
            f"<select {_attrs(**common)}>{''.join(choices)}</select></div>"
        )
    attrs = _attrs(
        type=_INPUT_TYPES[item.type],
        **common,
        value=item.default_value,
        placeholder=item.placeholder,
        autocomplete=_AUTOCOMPLETE.get(item.maps_to, ""),
        maxlength="2000",
    )
    return f'<div class="tnx-field">{_label(item, input_id)}<input {attrs}></div>'


def honeypot_name(form: Form) -> str:
    taken = {item.name.lower() for item in form.fields}
    return next((n for n in HONEYPOT_NAMES if n not in taken), "tnx_hp_" + secrets.token_hex(3))


def render(form: Form, *, token: str, submit_url: str) -> str:
    # Unique per snippet, so the same form can sit twice on one page.
    root_id = f"tnx-form-{form.slug}-{secrets.token_hex(3)}"
    trap = honeypot_name(form)
    config = {
        "url": submit_url,
        "token": token,
        "success": form.success_message,
        "redirect": form.redirect_url,
        "honeypot": trap,
        "fields": [{"name": item.name, "type": item.type} for item in form.fields],
    }
    inputs = "\n".join(_field(item, f"{root_id}-{item.name}") for item in form.fields)
    script = _SCRIPT.replace("__TNX_ROOT_ID__", _json_literal(root_id)).replace(
        "__TNX_CONFIG__", _json_literal(config)
    )
    return (
        f'<div class="tnx-form" id="{root_id}">\n'
        f"<style>{_STYLE.format(id=root_id)}</style>\n"
        f'<form method="post" action="{escape(submit_url, quote=True)}" '
        f'data-tnx-form="{escape(form.slug, quote=True)}">\n'
        f"{inputs}\n"
        f'<div class="tnx-trap" aria-hidden="true"><label>Leave this empty '
        f'<input type="text" name="{trap}" tabindex="-1" autocomplete="off"></label></div>\n'
        f'<button type="submit">{escape(form.submit_label)}</button>\n'
        f"</form>\n"
        f'<p class="tnx-form-status" role="status" aria-live="polite" hidden></p>\n'
        f"<script>{script}</script>\n"
        f"</div>\n"
    )
