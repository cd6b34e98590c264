// Starts the local copy of Swagger UI on the server's own OpenAPI document (no outside calls).
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    validatorUrl: null,
    deepLinking: false,
    defaultModelsExpandDepth: 0,
  });
});
