/*
 * Broadsheet moderation UI: the queues of the moderation API, driven by mouse or keyboard.
 *
 * Comments are untrusted: every piece of them is put on the page with textContent, never parsed as markup.
 * The token is kept in sessionStorage (this tab only) and sent as a bearer token; a 401 forgets it.
 *
 * A queue is read a page at a time (newest first); "Show older" reads the next page with `before` set to the
 * submission time of the oldest comment shown. One comment's action names the revision the moderator saw
 * (`expected_revision`): when someone decided first, the API answers 409 and the queue is read again.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "broadsheet:moderation-token";
  var NAME_KEY = "broadsheet:moderator";
  var ACTIONS = { a: "approve", r: "reject", s: "spam", u: "restore" };
  var DONE = { approve: "Approved", reject: "Rejected", spam: "Marked as spam", restore: "Restored" };
  var WORK_QUEUES = { pending: true, spam: true, reported: true };
  var PAGE = 200;
  var MAX_LIMIT = 500; // the API's largest page

  var state = {
    status: "pending",
    items: [],
    current: 0,
    selected: {},
    total: null, // the queue's size (X-Total-Count), null when the API did not say
    exhausted: false, // an older page came back with nothing new
    loading: false, // the queue is being read afresh
    loadingOlder: false,
    generation: 0, // bumped by every (re)load, so a late answer for another queue or an older read is dropped
    history: {} // comment id -> {open, loading, entries, error}
  };
  var el = {};

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function moderator() {
    return window.sessionStorage.getItem(NAME_KEY) || "moderator";
  }

  function why() {
    return el.reason.value.trim();
  }

  function who(extra) {
    var body = { moderator: moderator() };
    if (why()) {
      body.reason = why();
    }
    Object.keys(extra || {}).forEach(function (key) {
      body[key] = extra[key];
    });
    return body;
  }

  function say(text, isError) {
    el.statusLine.textContent = text;
    el.statusLine.className = isError ? "error" : "";
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  /* An error of the API: its sentence as the message, with the HTTP status (0 when there was no answer). */
  function apiError(message, status, data) {
    var error = new Error(message);
    error.status = status;
    error.data = data;
    return error;
  }

  /* The answer's JSON and its response (for headers); throws an apiError for any status but 2xx. */
  function request(method, path, body) {
    var options = {
      method: method,
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      credentials: "omit",
      cache: "no-store"
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return window.fetch(path, options).then(function (response) {
      if (response.status === 401) {
        signOut("The token was refused.");
        throw apiError("unauthorized", 401, null);
      }
      return response.json().then(
        function (data) {
          if (!response.ok) {
            throw apiError(data && data.error ? data.error : "HTTP " + response.status, response.status, data);
          }
          return { data: data, response: response };
        },
        function () {
          // Not JSON: a proxy's error page, say. The status says more than the parser's complaint.
          throw apiError("HTTP " + response.status, response.status, null);
        }
      );
    });
  }

  function api(method, path, body) {
    return request(method, path, body).then(function (answer) {
      return answer.data;
    });
  }

  function signOut(message) {
    window.sessionStorage.removeItem(TOKEN_KEY);
    el.workspace.hidden = true;
    el.queues.hidden = true;
    el.signOutButton.hidden = true;
    el.login.hidden = false;
    el.loginError.hidden = !message;
    el.loginError.textContent = message || "";
    el.token.value = "";
    el.token.focus();
  }

  function showWorkspace() {
    el.login.hidden = true;
    el.loginError.hidden = true;
    el.workspace.hidden = false;
    el.queues.hidden = false;
    el.signOutButton.hidden = false;
    load();
  }

  function text(tag, className, value) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    node.textContent = value === undefined || value === null ? "" : String(value);
    return node;
  }

  function button(label, className, handler) {
    var node = text("button", className, label);
    node.type = "button";
    node.addEventListener("click", function (event) {
      event.stopPropagation();
      handler();
    });
    return node;
  }

  function when(iso) {
    var date = new Date(iso);
    return isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }

  /*
   * Epoch seconds of an ISO time, to the microsecond, as a decimal string: the queue is scored with Python's
   * timestamp(), and a Date keeps milliseconds only, which would skip the comments of the same millisecond.
   * `later` adds one microsecond, so comments submitted at the very same time as this one are read again
   * (the page is de-duplicated by id) rather than skipped by the exclusive bound. Null when unreadable.
   */
  function epochSeconds(iso, later) {
    var match = /^(.*T\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(.*)$/.exec(String(iso || ""));
    if (!match) {
      return null;
    }
    var millis = Date.parse(match[1] + match[3]);
    if (isNaN(millis)) {
      return null;
    }
    var seconds = Math.floor(millis / 1000);
    var micros = parseInt(((match[2] || "") + "000000").slice(0, 6), 10);
    if (later) {
      micros += 1;
      if (micros >= 1000000) {
        micros -= 1000000;
        seconds += 1;
      }
    }
    return seconds + "." + ("000000" + micros).slice(-6);
  }

  function summary() {
    var shown = state.items.length;
    var total = state.total === null ? shown : Math.max(state.total, shown);
    var noun = plural(total, state.status + " comment");
    return shown < total ? "Showing " + shown + " of " + noun : noun;
  }

  function moreToShow() {
    if (state.exhausted || state.loading || !state.items.length) {
      return false;
    }
    // Without a count from the API, a page as long as asked for may have more behind it.
    return state.total === null ? state.items.length >= PAGE : state.items.length < state.total;
  }

  function renderMore() {
    var more = moreToShow();
    el.older.hidden = !more;
    el.older.disabled = state.loadingOlder;
    if (more) {
      el.older.textContent = state.loadingOlder
        ? "Loading older comments…"
        : "Show older" + (state.total === null ? "" : " (" + (state.total - state.items.length) + " more)");
    }
  }

  function historyEntries(entry) {
    var box = document.createElement("div");
    box.className = "history";
    if (entry.loading) {
      box.appendChild(text("p", "meta", "Loading the history…"));
      return box;
    }
    if (entry.error) {
      box.appendChild(text("p", "error", "Could not load the history: " + entry.error));
      return box;
    }
    var list = document.createElement("ol");
    list.className = "history-entries";
    list.setAttribute("aria-label", "Decisions, oldest first");
    (entry.entries || []).forEach(function (step) {
      var row = document.createElement("li");
      row.appendChild(text("span", "rev", "rev " + step.revision));
      row.appendChild(text("span", "status", step.status));
      row.appendChild(text("span", "actor", "by " + step.actor));
      row.appendChild(text("span", "meta", when(step.at)));
      var reasons = step.reasons || [];
      if (reasons.length) {
        row.appendChild(text("span", "history-why", reasons.join(", ")));
      }
      list.appendChild(row);
    });
    if (!list.childNodes.length) {
      box.appendChild(text("p", "meta", "No decisions recorded."));
    } else {
      box.appendChild(list);
    }
    return box;
  }

  function render() {
    el.list.textContent = "";
    el.empty.hidden = state.items.length > 0 || state.loading;
    var work = WORK_QUEUES[state.status] === true;
    state.items.forEach(function (comment, index) {
      var item = document.createElement("li");
      item.className = "comment";
      item.id = "mod-" + index;
      item.setAttribute("data-id", comment.id);
      item.setAttribute("tabindex", "-1");
      if (index === state.current) {
        item.className += " current";
      }
      if (state.selected[comment.id]) {
        item.className += " selected";
      }
      var head = document.createElement("div");
      head.className = "head";
      head.appendChild(text("span", "author", comment.author));
      if (comment.author_url) {
        head.appendChild(text("span", "meta", comment.author_url));
      }
      head.appendChild(text("span", "meta", when(comment.submitted_at)));
      if (comment.article && /^https?:\/\//.test(comment.article.url)) {
        // The story the comment answers, to read it against (opens beside the queue).
        var story = text("a", "meta article-link", comment.article.headline);
        story.href = comment.article.url;
        story.target = "_blank";
        story.rel = "noopener noreferrer";
        story.title = "article " + comment.article_guid;
        head.appendChild(story);
      } else {
        head.appendChild(text("span", "meta", "article " + comment.article_guid));
      }
      if (comment.parent_id) {
        var answered = comment.parent
          ? comment.parent.author + ": \u201c" + comment.parent.excerpt + "\u201d"
          : comment.parent_id;
        head.appendChild(text("span", "meta", "reply to " + answered));
      }
      if (comment.spam_score !== null && comment.spam_score !== undefined) {
        head.appendChild(text("span", "meta", "spam score " + Number(comment.spam_score).toFixed(2)));
      }
      if (comment.near_count > 1) {
        // Counted over every queue and article: not the number a "similar" action below acts on.
        head.appendChild(text("span", "meta", comment.near_count + " near-identical site-wide"));
      }
      head.appendChild(text("span", "meta", "rev " + comment.revision + " by " + comment.actor));
      item.appendChild(head);
      item.appendChild(text("div", "body", comment.body));
      var reasons = document.createElement("ul");
      reasons.className = "reasons";
      (comment.reasons || []).forEach(function (reason) {
        reasons.appendChild(text("li", "", reason));
      });
      item.appendChild(reasons);
      var buttons = document.createElement("div");
      buttons.className = "buttons";
      ["approve", "reject", "spam", "restore"].forEach(function (action) {
        if (!(action === "restore" && comment.status === "pending")) {
          buttons.appendChild(
            button(action.charAt(0).toUpperCase() + action.slice(1), action, function () {
              state.current = index;
              act(action, [comment]);
            })
          );
        }
      });
      buttons.appendChild(
        button(state.selected[comment.id] ? "Unselect" : "Select", "select", function () {
          toggle(comment);
        })
      );
      if (work && comment.near_count > 1) {
        // Only this queue's near-identical comments are acted on (the API is told so), never other queues'.
        if (state.status !== "spam") {
          buttons.appendChild(
            button("Spam similar in this queue", "spam near", function () {
              actOnNear("spam", comment);
            })
          );
        }
        buttons.appendChild(
          button("Reject similar in this queue", "reject near", function () {
            actOnNear("reject", comment);
          })
        );
      }
      var history = state.history[comment.id];
      var open = Boolean(history && history.open);
      var historyButton = button(open ? "Hide history" : "History", "history-toggle", function () {
        state.current = index;
        toggleHistory(comment);
      });
      historyButton.setAttribute("aria-expanded", open ? "true" : "false");
      historyButton.setAttribute("aria-controls", "history-" + index);
      buttons.appendChild(historyButton);
      buttons.appendChild(
        button("Ban author", "ban", function () {
          ban(comment, false);
        })
      );
      buttons.appendChild(
        button("Ban author and IP", "ban", function () {
          ban(comment, true);
        })
      );
      item.appendChild(buttons);
      if (open) {
        var box = historyEntries(history);
        box.id = "history-" + index;
        item.appendChild(box);
      }
      item.addEventListener("click", function () {
        state.current = index;
        render();
      });
      el.list.appendChild(item);
    });
    renderMore();
    var current = document.getElementById("mod-" + state.current);
    if (current && current.scrollIntoView) {
      current.scrollIntoView({ block: "nearest" });
    }
  }

  function listPath(limit, before) {
    return (
      "/moderation/comments?status=" + encodeURIComponent(state.status) + "&limit=" + limit +
      (before ? "&before=" + encodeURIComponent(before) : "")
    );
  }

  function totalOf(response) {
    var header = response.headers.get("X-Total-Count");
    var total = header === null ? NaN : parseInt(header, 10);
    return isNaN(total) ? null : total;
  }

  /*
   * Read the queue again from its newest comment (as many as are shown, within the API's page limit). With
   * `options.message`, that message stays in the status line (an error stays an error) with the count after it.
   */
  function load(options) {
    options = options || {};
    var generation = ++state.generation;
    var keepCurrent = state.items[state.current] ? state.items[state.current].id : null;
    var limit = Math.min(Math.max(state.items.length, PAGE), MAX_LIMIT);
    state.loadingOlder = false;
    state.loading = true;
    if (!options.message) {
      say("Loading…");
    }
    return request("GET", listPath(limit))
      .then(function (answer) {
        if (generation !== state.generation) {
          return;
        }
        var items = Array.isArray(answer.data) ? answer.data : [];
        state.loading = false;
        state.items = items;
        state.total = totalOf(answer.response);
        state.exhausted = false;
        var again = keepCurrent === null ? -1 : items.map(function (item) {
          return item.id;
        }).indexOf(keepCurrent);
        state.current = again >= 0 ? again : Math.min(state.current, Math.max(items.length - 1, 0));
        state.selected = {};
        var shown = {};
        items.forEach(function (item) {
          shown[item.id] = true;
        });
        Object.keys(state.history).forEach(function (id) {
          if (!shown[id] || !state.history[id].open) {
            delete state.history[id];
          }
        });
        render();
        Object.keys(state.history).forEach(function (id) {
          fetchHistory(id); // what is open is read again: the trail may have grown
        });
        say(options.message ? options.message + " — " + summary() : summary(), options.isError);
      })
      .catch(function (error) {
        if (generation !== state.generation) {
          return;
        }
        state.loading = false;
        render();
        if (error.status !== 401) {
          say((options.message ? options.message + " — " : "") + "Could not load the queue: " + error.message, true);
        }
      });
  }

  /* Append the next page: the comments submitted before the oldest one shown. */
  function loadOlder() {
    if (state.loadingOlder || !moreToShow()) {
      return;
    }
    var generation = state.generation;
    var last = state.items[state.items.length - 1];
    var inclusive = epochSeconds(last.submitted_at, true);
    if (inclusive === null) {
      say("Could not read the time of the oldest comment shown: " + last.submitted_at, true);
      return;
    }
    state.loadingOlder = true;
    renderMore();
    say("Loading older comments…");

    function page(before, exact) {
      return request("GET", listPath(PAGE, before)).then(function (answer) {
        if (generation !== state.generation) {
          return null;
        }
        var known = {};
        state.items.forEach(function (item) {
          known[item.id] = true;
        });
        var items = Array.isArray(answer.data) ? answer.data : [];
        var fresh = items.filter(function (item) {
          if (known[item.id]) {
            return false;
          }
          known[item.id] = true;
          return true;
        });
        if (!fresh.length && items.length >= PAGE && !exact) {
          // A whole page of comments submitted at the oldest one's very time: step past that time instead.
          return page(epochSeconds(last.submitted_at, false), true);
        }
        return { fresh: fresh, total: totalOf(answer.response) };
      });
    }

    page(inclusive, false)
      .then(function (result) {
        if (result === null) {
          return;
        }
        state.loadingOlder = false;
        if (result.total !== null) {
          state.total = result.total;
        }
        if (!result.fresh.length) {
          state.exhausted = true; // the rest of the count is not readable (yet): stop offering more
          render();
          say(summary() + " — no older comments to show");
          return;
        }
        var first = state.items.length;
        state.items = state.items.concat(result.fresh);
        state.current = first; // carry on from the first comment of the new page
        render();
        say(summary());
      })
      .catch(function (error) {
        if (generation !== state.generation) {
          return;
        }
        state.loadingOlder = false;
        renderMore();
        if (error.status !== 401) {
          say("Could not load older comments: " + error.message, true);
        }
      });
  }

  function selectedItems() {
    return state.items.filter(function (comment) {
      return state.selected[comment.id];
    });
  }

  function removeDone(ids) {
    var gone = {};
    ids.forEach(function (id) {
      gone[id] = true;
      delete state.history[id];
    });
    var kept = state.items.filter(function (comment) {
      return !gone[comment.id];
    });
    if (state.total !== null) {
      // Every accepted id left this queue, whether it was shown or on a page not read yet.
      state.total = Math.max(state.total - ids.length, kept.length);
    }
    state.items = kept;
    state.selected = {};
    state.current = Math.min(state.current, Math.max(kept.length - 1, 0));
    render();
  }

  function act(action, comments) {
    if (!comments.length) {
      return;
    }
    var done;
    if (comments.length === 1) {
      var comment = comments[0];
      done = api(
        "POST",
        "/moderation/comments/" + encodeURIComponent(comment.id) + "/" + action,
        who({ expected_revision: comment.revision })
      ).then(function (result) {
        // `changed: false`: it already had that status, nothing was done; it stays where it is.
        return result.changed === false ? { accepted: [], unchanged: [comment.id] } : { accepted: [comment.id] };
      });
    } else {
      done = api(
        "POST",
        "/moderation/comments/bulk",
        who({
          action: action,
          ids: comments.map(function (item) {
            return item.id;
          }),
          // The revision each was seen at: one another moderator decided meanwhile is refused, not overwritten.
          revisions: comments.reduce(function (seen, item) {
            seen[item.id] = item.revision;
            return seen;
          }, {})
        })
      );
    }
    done
      .then(function (result) {
        var ids = result.accepted || [];
        var unchanged = (result.unchanged || []).length;
        var refused = result.refused || [];
        removeDone(ids);
        say(
          DONE[action] + " " + plural(ids.length, "comment") +
            (unchanged ? "; " + unchanged + " already so, left as they were" : "") +
            (refused.length ? "; " + refused.length + " refused (" + refused[0].error + ")" : "") +
            " — " + summary(),
          refused.length > 0
        );
      })
      .catch(function (error) {
        if (error.status === 401) {
          return;
        }
        if (error.status === 409) {
          // Someone decided first (or the approval is refused): say why, and show the queue as it is now.
          say("Could not " + action + ": " + error.message + ". Reloading the queue…", true);
          load({ message: "Could not " + action + ": " + error.message + ". The queue was reloaded", isError: true });
          return;
        }
        say("Could not " + action + ": " + error.message, true);
      });
  }

  function ban(comment, withIp) {
    var what = withIp ? "this comment's author and IP address" : "this comment's author";
    if (!window.confirm("Ban " + what + "? Their next comments will be rejected.")) {
      return;
    }
    api("POST", "/moderation/bans", who({ comment_id: comment.id, with_ip: withIp }))
      .then(function (result) {
        say("Banned: " + (result.banned || []).join(" and "));
      })
      .catch(function (error) {
        if (error.status !== 401) {
          say("Could not ban: " + error.message, true);
        }
      });
  }

  /* The comments near-identical to this one in this queue only (whether shown or not), never other queues'. */
  function actOnNear(action, comment) {
    var queue = state.status;
    if (!WORK_QUEUES[queue]) {
      return;
    }
    api("POST", "/moderation/comments/bulk", who({ action: action, near_key: comment.near_key, statuses: [queue] }))
      .then(function (result) {
        if (queue !== state.status) {
          return; // the moderator moved to another queue meanwhile; its list is read afresh anyway
        }
        var ids = result.accepted || [];
        var unchanged = (result.unchanged || []).length;
        removeDone(ids);
        say(
          DONE[action] + " " + plural(ids.length, "near-identical comment") + " in this queue" +
            (unchanged ? "; " + unchanged + " in other queues or already so, left as they were" : "") +
            " — " + summary()
        );
      })
      .catch(function (error) {
        if (error.status !== 401) {
          say("Could not " + action + ": " + error.message, true);
        }
      });
  }

  function fetchHistory(id) {
    var entry = state.history[id];
    if (!entry) {
      return;
    }
    entry.loading = true;
    entry.error = null;
    var generation = state.generation;
    api("GET", "/moderation/comments/" + encodeURIComponent(id))
      .then(function (record) {
        if (state.history[id] !== entry || generation !== state.generation) {
          return;
        }
        entry.loading = false;
        entry.entries = Array.isArray(record.history) ? record.history : [];
        render();
      })
      .catch(function (error) {
        if (state.history[id] !== entry || generation !== state.generation || error.status === 401) {
          return;
        }
        entry.loading = false;
        entry.error = error.message;
        render();
      });
  }

  function toggleHistory(comment) {
    var entry = state.history[comment.id];
    if (entry && entry.open) {
      delete state.history[comment.id];
      render();
      return;
    }
    state.history[comment.id] = { open: true, loading: true, entries: null, error: null };
    render();
    fetchHistory(comment.id);
  }

  function toggle(comment) {
    if (state.selected[comment.id]) {
      delete state.selected[comment.id];
    } else {
      state.selected[comment.id] = true;
    }
    render();
  }

  function selectNear(comment) {
    state.items.forEach(function (item) {
      if (item.near_key === comment.near_key) {
        state.selected[item.id] = true;
      }
    });
    render();
  }

  function onKey(event) {
    if (el.workspace.hidden || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) {
      return;
    }
    var key = event.key;
    var current = state.items[state.current];
    if (key === "j" || key === "ArrowDown") {
      state.current = Math.min(state.current + 1, Math.max(state.items.length - 1, 0));
      render();
    } else if (key === "k" || key === "ArrowUp") {
      state.current = Math.max(state.current - 1, 0);
      render();
    } else if (key === "x" && current) {
      toggle(current);
    } else if (key === "n" && current) {
      selectNear(current);
    } else if (key === "h" && current) {
      toggleHistory(current);
    } else if (key === "o") {
      loadOlder();
    } else if (key === ".") {
      load();
    } else if (ACTIONS[key]) {
      var chosen = selectedItems();
      act(ACTIONS[key], chosen.length ? chosen : current ? [current] : []);
    } else {
      return;
    }
    event.preventDefault();
  }

  function start() {
    el.login = document.getElementById("login");
    el.loginError = document.getElementById("login-error");
    el.token = document.getElementById("token");
    el.moderatorName = document.getElementById("moderator");
    el.workspace = document.getElementById("workspace");
    el.queues = document.getElementById("queues");
    el.signOutButton = document.getElementById("sign-out");
    el.statusLine = document.getElementById("status-line");
    el.list = document.getElementById("comments");
    el.empty = document.getElementById("empty");
    el.reason = document.getElementById("reason");
    el.older = document.getElementById("show-older");

    el.login.addEventListener("submit", function (event) {
      event.preventDefault();
      window.sessionStorage.setItem(TOKEN_KEY, el.token.value.trim());
      if (el.moderatorName.value.trim()) {
        window.sessionStorage.setItem(NAME_KEY, el.moderatorName.value.trim());
      }
      el.token.value = "";
      showWorkspace();
    });
    el.signOutButton.addEventListener("click", function () {
      signOut("");
    });
    document.getElementById("refresh").addEventListener("click", function () {
      load();
    });
    el.older.addEventListener("click", loadOlder);
    Array.prototype.forEach.call(document.querySelectorAll("button[data-bulk]"), function (node) {
      node.addEventListener("click", function () {
        act(node.getAttribute("data-bulk"), selectedItems());
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.queue"), function (node) {
      node.addEventListener("click", function () {
        state.status = node.getAttribute("data-status");
        state.current = 0;
        state.items = [];
        state.total = null;
        state.history = {};
        Array.prototype.forEach.call(document.querySelectorAll("button.queue"), function (other) {
          other.setAttribute("aria-pressed", other === node ? "true" : "false");
        });
        load();
        render(); // the old queue's comments go at once; "Loading…" says why the list is empty
      });
    });
    document.addEventListener("keydown", onKey);
    if (token()) {
      showWorkspace();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
