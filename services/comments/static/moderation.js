/*
 * Broadsheet moderation UI: the queues of the moderation API, driven by mouse or keyboard.
 *
 * Comments are untrusted: every piece of them is put on the page with textContent, never parsed as markup.
 * The token is kept in sessionStorage (this tab only) and sent as a bearer token; a 401 forgets it.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "broadsheet:moderation-token";
  var NAME_KEY = "broadsheet:moderator";
  var ACTIONS = { a: "approve", r: "reject", s: "spam", u: "restore" };
  var DONE = { approve: "Approved", reject: "Rejected", spam: "Marked as spam", restore: "Restored" };

  var state = { status: "pending", items: [], current: 0, selected: {} };
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

  function api(method, path, body) {
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
        throw new Error("unauthorized");
      }
      return response.json().then(
        function (data) {
          if (!response.ok) {
            throw new Error(data && data.error ? data.error : "HTTP " + response.status);
          }
          return data;
        },
        function () {
          // Not JSON: a proxy's error page, say. The status says more than the parser's complaint.
          throw new Error("HTTP " + response.status);
        }
      );
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

  function render() {
    el.list.textContent = "";
    el.empty.hidden = state.items.length > 0;
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
      head.appendChild(text("span", "meta", "article " + comment.article_guid));
      if (comment.parent_id) {
        head.appendChild(text("span", "meta", "reply to " + comment.parent_id));
      }
      if (comment.spam_score !== null && comment.spam_score !== undefined) {
        head.appendChild(text("span", "meta", "spam score " + Number(comment.spam_score).toFixed(2)));
      }
      if (comment.near_count > 1) {
        head.appendChild(text("span", "meta", comment.near_count + " near-identical"));
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
      if (comment.near_count > 1) {
        buttons.appendChild(
          button("Spam all " + comment.near_count + " similar", "spam near", function () {
            actOnNear("spam", comment);
          })
        );
        buttons.appendChild(
          button("Reject all " + comment.near_count + " similar", "reject near", function () {
            actOnNear("reject", comment);
          })
        );
      }
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
      item.addEventListener("click", function () {
        state.current = index;
        render();
      });
      el.list.appendChild(item);
    });
    var current = document.getElementById("mod-" + state.current);
    if (current && current.scrollIntoView) {
      current.scrollIntoView({ block: "nearest" });
    }
  }

  function load() {
    say("Loading…");
    return api("GET", "/moderation/comments?status=" + encodeURIComponent(state.status) + "&limit=200")
      .then(function (items) {
        state.items = Array.isArray(items) ? items : [];
        state.current = Math.min(state.current, Math.max(state.items.length - 1, 0));
        state.selected = {};
        render();
        say(state.items.length + " " + state.status + " comment" + (state.items.length === 1 ? "" : "s"));
      })
      .catch(function (error) {
        if (error.message !== "unauthorized") {
          say("Could not load the queue: " + error.message, true);
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
    });
    var kept = state.items.filter(function (comment) {
      return !gone[comment.id];
    });
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
      done = api(
        "POST", "/moderation/comments/" + encodeURIComponent(comments[0].id) + "/" + action, who()
      ).then(function (result) {
        // `changed: false`: it already had that status, nothing was done; it stays where it is.
        return result.changed === false ? { accepted: [], unchanged: [comments[0].id] } : { accepted: [comments[0].id] };
      });
    } else {
      done = api(
        "POST",
        "/moderation/comments/bulk",
        who({
          action: action,
          ids: comments.map(function (comment) {
            return comment.id;
          })
        })
      );
    }
    done
      .then(function (result) {
        var ids = result.accepted || [];
        var unchanged = (result.unchanged || []).length;
        removeDone(ids);
        say(
          DONE[action] + " " + ids.length + " comment" + (ids.length === 1 ? "" : "s") +
            (unchanged ? "; " + unchanged + " already so, left as they were" : "")
        );
      })
      .catch(function (error) {
        if (error.message !== "unauthorized") {
          say("Could not " + action + ": " + error.message, true);
        }
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
        if (error.message !== "unauthorized") {
          say("Could not ban: " + error.message, true);
        }
      });
  }

  function actOnNear(action, comment) {
    api("POST", "/moderation/comments/bulk", who({ action: action, near_key: comment.near_key }))
      .then(function (result) {
        var ids = result.accepted || [];
        removeDone(
          state.items
            .filter(function (item) {
              return item.near_key === comment.near_key;
            })
            .map(function (item) {
              return item.id;
            })
        );
        say(DONE[action] + " " + ids.length + " near-identical comments");
      })
      .catch(function (error) {
        if (error.message !== "unauthorized") {
          say("Could not " + action + ": " + error.message, true);
        }
      });
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
    document.getElementById("refresh").addEventListener("click", load);
    Array.prototype.forEach.call(document.querySelectorAll("button[data-bulk]"), function (node) {
      node.addEventListener("click", function () {
        act(node.getAttribute("data-bulk"), selectedItems());
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.queue"), function (node) {
      node.addEventListener("click", function () {
        state.status = node.getAttribute("data-status");
        state.current = 0;
        Array.prototype.forEach.call(document.querySelectorAll("button.queue"), function (other) {
          other.setAttribute("aria-pressed", other === node ? "true" : "false");
        });
        load();
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
