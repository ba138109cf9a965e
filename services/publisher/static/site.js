/*
 * Broadsheet reader script: progressive enhancement only, every page works without it.
 *
 * - "Reply" links set the form's comment_parent instead of opening the reply page (the no-script path).
 * - Once the article's comments have closed (its publication plus the site's closing period, both on #respond),
 *   the form gives way to "Comments are closed.": the page was rendered while they were open and is served
 *   unchanged, and the server would refuse every post.
 * - A submitted comment is remembered in localStorage and, once the server has confirmed it (the redirect
 *   lands on ?pending={id}#comment-pending), shown to its author on that article as "Awaiting moderation". The
 *   page asks the publisher how moderation went (GET /api/comments/{id}): the note goes once the comment is on
 *   the page or was not published, and a comment turned down at once says so in place of the pending notice.
 *   Everything is built with textContent: reader text is never parsed as markup.
 */
(function () {
  "use strict";

  var STORE_KEY = "broadsheet:pending-comments";
  var CONFIRM_WINDOW_MS = 10 * 60 * 1000; // a submission never confirmed by then was refused
  var KEEP_MS = 14 * 24 * 60 * 60 * 1000; // moderation rarely takes longer; stale notes go away
  var MAX_KEPT = 20;
  var DAY_MS = 24 * 60 * 60 * 1000;
  var ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
  var STATUS_RETRIES = 4; // a comment not decided yet when the page loads is asked about again
  var STATUS_RETRY_MS = 1500;

  function metaContent(name) {
    var meta = document.querySelector('meta[name="' + name + '"]');
    return meta ? meta.getAttribute("content") : null;
  }

  function loadPending() {
    try {
      var parsed = JSON.parse(window.localStorage.getItem(STORE_KEY) || "[]");
      return Array.isArray(parsed) ? parsed : [];
    } catch (error) {
      return [];
    }
  }

  function savePending(entries) {
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(entries.slice(-MAX_KEPT)));
    } catch (error) {
      /* storage full or disabled: the notice from the server still tells the reader */
    }
  }

  function isCurrent(entry, now) {
    if (!entry || typeof entry !== "object" || typeof entry.at !== "number") {
      return false;
    }
    var age = now - entry.at;
    return entry.confirmed ? age < KEEP_MS : age < CONFIRM_WINDOW_MS;
  }

  function squash(text) {
    return String(text || "").replace(/\s+/g, "");
  }

  function publishedComments() {
    var found = [];
    var nodes = document.querySelectorAll("#comments article.comment");
    for (var i = 0; i < nodes.length; i += 1) {
      var author = nodes[i].querySelector(".comment-author");
      var body = nodes[i].querySelector(".comment-body");
      found.push({
        author: squash(author ? author.textContent : ""),
        body: squash(body ? body.textContent : "")
      });
    }
    return found;
  }

  function isPublished(entry, published) {
    var author = squash(entry.author);
    var body = squash(entry.body).slice(0, 200);
    return published.some(function (comment) {
      return comment.author === author && comment.body.indexOf(body) !== -1;
    });
  }

  function commentsClosed(respond, now) {
    var published = Date.parse(respond.getAttribute("data-published") || "");
    var days = Number(respond.getAttribute("data-close-after-days"));
    return days > 0 && !isNaN(published) && now >= published + days * DAY_MS;
  }

  function closeComments(respond) {
    var notice = document.getElementById("comments-closed");
    Array.prototype.slice.call(respond.children).forEach(function (child) {
      if (child !== notice && child.tagName !== "H2") {
        child.remove();
      }
    });
    Array.prototype.slice.call(document.querySelectorAll("#comments .comment-reply")).forEach(function (reply) {
      reply.remove();
    });
    if (notice) {
      notice.hidden = false;
    }
  }

  function setUpReplies(form) {
    var parentInput = form.querySelector('input[name="comment_parent"]');
    var replyingTo = document.getElementById("replying-to");
    var replyingToName = document.getElementById("replying-to-name");
    var cancel = document.getElementById("cancel-reply");
    var textarea = form.querySelector('textarea[name="comment"]');
    if (!parentInput) {
      return;
    }

    function replyTo(commentId, author) {
      parentInput.value = commentId;
      if (replyingTo && replyingToName) {
        replyingToName.textContent = author;
        replyingTo.hidden = false;
      }
    }

    document.addEventListener("click", function (event) {
      var target = event.target;
      var link = target && target.closest ? target.closest("a.comment-reply-link") : null;
      if (!link) {
        return;
      }
      event.preventDefault();
      replyTo(link.getAttribute("data-comment-id") || "0", link.getAttribute("data-author") || "");
      document.getElementById("respond").scrollIntoView();
      if (textarea) {
        textarea.focus();
      }
    });

    if (cancel) {
      cancel.addEventListener("click", function () {
        parentInput.value = "0";
        if (replyingTo) {
          replyingTo.hidden = true;
        }
      });
    }

    var requested = new URLSearchParams(window.location.search).get("replytocom");
    if (requested && document.getElementById("comment-" + requested)) {
      var link = document.querySelector('a.comment-reply-link[data-comment-id="' + CSS.escape(requested) + '"]');
      replyTo(requested, link ? link.getAttribute("data-author") || "" : "");
    }
  }

  function rememberSubmissions(form, guid) {
    form.addEventListener("submit", function () {
      var now = Date.now();
      var entries = loadPending().filter(function (entry) {
        return isCurrent(entry, now);
      });
      entries.push({
        guid: guid,
        author: String(form.elements.author ? form.elements.author.value : ""),
        body: String(form.elements.comment ? form.elements.comment.value : ""),
        at: now,
        confirmed: false
      });
      savePending(entries);
    });
  }

  function pendingComment(entry) {
    var item = document.createElement("li");
    var article = document.createElement("article");
    article.className = "comment comment-awaiting";
    var meta = document.createElement("footer");
    meta.className = "comment-meta";
    var author = document.createElement("p");
    author.className = "comment-author";
    author.textContent = entry.author;
    var status = document.createElement("p");
    status.className = "comment-status";
    status.textContent = "Awaiting moderation";
    meta.appendChild(author);
    meta.appendChild(status);
    var body = document.createElement("div");
    body.className = "comment-body";
    String(entry.body).split(/\n\s*\n/).forEach(function (paragraph) {
      if (paragraph.trim()) {
        var p = document.createElement("p");
        p.textContent = paragraph.trim();
        body.appendChild(p);
      }
    });
    article.appendChild(meta);
    article.appendChild(body);
    item.appendChild(article);
    return item;
  }

  function showOwnPending(guid) {
    var now = Date.now();
    var justConfirmed = window.location.hash === "#comment-pending";
    var published = publishedComments();
    var current = loadPending().filter(function (entry) {
      return isCurrent(entry, now);
    });
    var confirmedNow = null;
    if (justConfirmed) {
      // Only the newest submission on this article led here; an older one never confirmed was refused
      // (a 400 or 429 page), and must not be shown as awaiting moderation.
      var latest = null;
      current.forEach(function (entry) {
        if (entry.guid === guid && !entry.confirmed) {
          latest = entry;
        }
      });
      current = current.filter(function (entry) {
        return entry.guid !== guid || entry.confirmed || entry === latest;
      });
      if (latest) {
        latest.confirmed = true;
        confirmedNow = latest;
        var params = new URLSearchParams(window.location.search);
        var pendingId = params.get("pending");
        if (pendingId && ID_PATTERN.test(pendingId)) {
          latest.id = pendingId;
        }
      }
      forgetPendingParameter();
    }
    var entries = current.filter(function (entry) {
      var shown = idOf(entry) && document.getElementById("comment-" + idOf(entry));
      return !(entry.guid === guid && entry.confirmed && (shown || isPublished(entry, published)));
    });
    savePending(entries);

    var mine = entries.filter(function (entry) {
      return entry.guid === guid && entry.confirmed;
    });
    var section = document.getElementById("comments");
    if (!mine.length || !section) {
      return;
    }
    var list = document.createElement("ol");
    list.className = "comment-list pending-comments";
    mine.forEach(function (entry) {
      var item = pendingComment(entry);
      list.appendChild(item);
      if (idOf(entry)) {
        var justPosted = entry === confirmedNow;
        followDecision(guid, entry, item, justPosted, justPosted ? STATUS_RETRIES : 0);
      }
    });
    section.appendChild(list);
  }

  function idOf(entry) {
    return typeof entry.id === "string" && ID_PATTERN.test(entry.id) ? entry.id : null;
  }

  function forgetPendingParameter() {
    // The comment id is for this page's script, not for a link the reader copies from the address bar.
    var params = new URLSearchParams(window.location.search);
    if (!params.has("pending") || !window.history.replaceState) {
      return;
    }
    params.delete("pending");
    var query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  }

  function forget(id) {
    savePending(loadPending().filter(function (entry) {
      return entry.id !== id;
    }));
  }

  function followDecision(guid, entry, item, justPosted, retries) {
    if (!window.fetch) {
      return;
    }
    var url = "/api/comments/" + encodeURIComponent(entry.id) + "?article_guid=" + encodeURIComponent(guid);
    window.fetch(url, { cache: "no-store", credentials: "omit", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (answer) {
        if (answer && answer.status === "received" && retries > 0) {
          // accepted, not decided yet: moderation takes a moment, or longer when its service is catching up
          window.setTimeout(function () {
            followDecision(guid, entry, item, justPosted, retries - 1);
          }, STATUS_RETRY_MS);
          return;
        }
        if (!answer || answer.status === "received" || answer.status === "awaiting_moderation") {
          return;
        }
        forget(entry.id);
        if (answer.status === "not_published") {
          item.remove();
          var notice = document.getElementById("comment-pending");
          if (justPosted && notice) {
            notice.textContent = "Your comment was not published.";
          }
        }
        // published: the note stays until the page, rendered again within a moment, shows the comment itself
      })
      .catch(function () {
        /* offline or the publisher busy: the note stays as it was */
      });
  }

  function start() {
    var guid = metaContent("broadsheet:guid");
    var form = document.getElementById("commentform");
    var respond = document.getElementById("respond");
    if (!guid || !form) {
      return;
    }
    if (respond && commentsClosed(respond, Date.now())) {
      closeComments(respond);
      showOwnPending(guid);
      return;
    }
    setUpReplies(form);
    rememberSubmissions(form, guid);
    showOwnPending(guid);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
