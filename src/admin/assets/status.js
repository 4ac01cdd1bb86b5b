// The status page's refresh: every few seconds it fetches the page again and puts the new content
// of each element marked data-refresh in place. The page needs none of this to be read: the
// server renders every figure. No library, no build step; served by the admin listener itself.
;(() => {
  const seconds = Number(document.body.dataset.refreshSeconds) || 5
  const pause = document.getElementById('pause')
  const updated = document.getElementById('updated')
  let paused = false
  let timer

  async function refresh() {
    let next
    try {
      const response = await fetch(location.href, { headers: { accept: 'text/html' }, credentials: 'same-origin', cache: 'no-store' })
      // The session ended (or the token changed): the page asks for the token again.
      if (response.status === 401) return location.reload()
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      next = new DOMParser().parseFromString(await response.text(), 'text/html')
    } catch (err) {
      updated.textContent = `Not updated (${err.message}); trying again in ${seconds} s`
      return
    }
    for (const part of document.querySelectorAll('[data-refresh]')) {
      const fresh = next.getElementById(part.id)
      // Left as it is while the keyboard is in it: replacing it would lose the focus.
      if (!fresh || part.contains(document.activeElement)) continue
      const scrolled = [...part.querySelectorAll('.scroll')].map((s) => s.scrollLeft)
      part.replaceChildren(...fresh.childNodes)
      part.querySelectorAll('.scroll').forEach((s, i) => {
        s.scrollLeft = scrolled[i] ?? 0
      })
    }
    const stamp = next.getElementById('updated')
    if (stamp) updated.replaceChildren(...stamp.childNodes)
    document.title = next.title
  }

  async function tick() {
    if (!paused && !document.hidden) await refresh()
    clearTimeout(timer)
    timer = setTimeout(tick, seconds * 1000)
  }

  pause.hidden = false
  pause.addEventListener('click', () => {
    paused = !paused
    pause.setAttribute('aria-pressed', String(paused))
    pause.textContent = paused ? 'Resume updates' : 'Pause updates'
    if (!paused) void refresh()
  })
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !paused) void refresh()
  })
  timer = setTimeout(tick, seconds * 1000)
})()
