// Placeholder dashboard until the app's build (impl/dashboard/web) replaces
// this directory: it shows the name and the ids of the served repositories,
// read from the public API on this origin, as text.
const root = document.getElementById("app");
const title = document.createElement("h1");
title.textContent = "stackd";
const list = document.createElement("ul");
root.append(title, list);
fetch("/api/v1/repos", { credentials: "same-origin", headers: { Accept: "application/json" } })
  .then((res) => (res.ok ? res.json() : []))
  .then((repos) => {
    for (const repo of repos) {
      const item = document.createElement("li");
      item.textContent = repo.id;
      list.append(item);
    }
  });
