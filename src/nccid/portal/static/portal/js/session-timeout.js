// Warns a few minutes before the session ends (a fixed time after signing in, however busy the
// user is: nccid.portal.session_ended) and, once it has, goes to the sign-in page, which says
// the session ended; a form sent after the end goes there instead of being sent.
// Tabs agree: each page shares the end the server put in it (localStorage), so a new session
// started in one tab (Sign in again, a password change) moves the others' end and closes their
// warning. Before leaving a page or holding a form back at its end, the page asks the server
// once how long is left (GET /session/left/, read only: it never saves or extends a session)
// and stays while the session lasts. It asks nothing else.

const SHARED = 'nccid-session-end' // {at: ms since 1970 by this computer's clock, text, datetime}
const RETRY_MS = 60000 // the server did not answer: the page stays as it is, and asks again then

const ends = document.getElementById('session-ends')
const dialog = document.getElementById('session-timeout')

function timeLeft (ms) {
  const minutes = Math.ceil(ms / 60000)
  return minutes <= 1 ? 'in less than a minute' : `in less than ${minutes} minutes`
}

function readShared () {
  try {
    const end = JSON.parse(localStorage.getItem(SHARED))
    return end && Number.isFinite(end.at) && typeof end.text === 'string' ? end : null
  } catch { // storage turned off, or not our value
    return null
  }
}

function share (end) {
  try {
    localStorage.setItem(SHARED, JSON.stringify(end))
  } catch { /* storage turned off: this tab still asks the server at its end */ }
}

async function askServer (url) {
  const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' })
  if (!response.ok) throw new Error(`${url} answered ${response.status}`)
  const answer = await response.json()
  if (!(answer.seconds_left > 0)) return null // ended, or signed out
  return { at: Date.now() + answer.seconds_left * 1000, text: answer.ends, datetime: answer.datetime }
}

function start () {
  const warning = Number(ends.dataset.warningSeconds) * 1000
  const shown = ends.querySelector('time')
  const endsAt = dialog.querySelector('[data-session-ends-at]')
  const left = dialog.querySelector('[data-session-left]')
  let end = {
    at: Date.now() + Number(ends.dataset.secondsLeft) * 1000,
    text: shown.textContent,
    datetime: shown.dateTime
  }
  let warned = false
  let returnFocus = null
  let asking = null // the server's answer, while awaited
  let askAgainAt = 0
  share(end) // the server's newest word: other tabs move to it

  const goToSignIn = () => window.location.assign(dialog.dataset.signIn)

  function warn () {
    warned = true
    returnFocus = document.activeElement
    dialog.showModal()
    dialog.querySelector('[data-session-close]').focus() // the action that changes nothing
  }

  // Another tab's page, or the server, says the session ends then (a new session: later).
  function moveTo (newer) {
    end = newer
    shown.textContent = endsAt.textContent = newer.text
    shown.dateTime = newer.datetime
    if (Date.now() < newer.at - warning) {
      warned = false
      if (dialog.open) dialog.close()
    }
    tick()
  }

  // At the end this page was given: a later one another tab shared, else the server's word.
  function stillSignedIn () {
    const shared = readShared()
    if (shared && shared.at > end.at) {
      moveTo(shared)
      return Promise.resolve(true)
    }
    asking ??= askServer(dialog.dataset.ask).then((newer) => {
      if (newer === null) return false
      share(newer)
      moveTo(newer)
      return true
    }).finally(() => { asking = null })
    return asking
  }

  function atTheEnd () {
    stillSignedIn().then((signedIn) => {
      if (!signedIn) {
        clearInterval(timer)
        goToSignIn()
      }
    }, () => { askAgainAt = Date.now() + RETRY_MS })
  }

  function tick () {
    const now = Date.now()
    if (now >= end.at) {
      if (!asking && now >= askAgainAt) atTheEnd()
      return
    }
    const said = timeLeft(end.at - now)
    if (left.textContent !== said) left.textContent = said // the live region speaks changes only
    if (now >= end.at - warning && !warned) warn()
  }

  dialog.querySelector('[data-session-close]').addEventListener('click', () => dialog.close())
  dialog.addEventListener('close', () => { // Carry on, Escape, or a new session
    if (returnFocus && returnFocus.isConnected) returnFocus.focus()
  })
  // A form sent after the end would reach the server signed out: held back until the server
  // says whether the session lasts (then sent as it was) or not (then to the sign-in page).
  document.addEventListener('submit', (event) => {
    if (Date.now() < end.at) return
    event.preventDefault()
    const form = event.target
    const submitter = event.submitter ?? undefined
    stillSignedIn().then((signedIn) => {
      if (signedIn) form.requestSubmit(submitter) // before the new end now: not held again
      else goToSignIn()
    }, () => { askAgainAt = Date.now() + RETRY_MS }) // no answer: what was typed stays
  }, true)
  window.addEventListener('storage', (event) => {
    const shared = event.key === SHARED && readShared()
    if (shared && shared.at !== end.at) moveTo(shared)
  })
  // Timers wait while a tab is hidden or the computer sleeps: look again when it is back.
  document.addEventListener('visibilitychange', tick)
  window.addEventListener('pageshow', tick)
  const timer = setInterval(tick, 1000)
  tick()
}

if (ends && dialog && typeof dialog.showModal === 'function') start()
