// After a refused form, move focus to the message so it is read out first.
const formError = document.getElementById("error") || document.getElementById("one-time");
if (formError) { formError.focus({ preventScroll: false }); }
